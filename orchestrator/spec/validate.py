"""Validation of the fleet file: every problem found, each as `FILE:LINE: field: problem — fix`."""

from __future__ import annotations

import difflib
import re

from orchestrator.errors import UsageError, SpecError
from orchestrator.spec.model import PACK_SIZE_DEFAULT, PACK_SIZE_MAX, CLIENT_PLACES, FANOUTS, RESTART_POLICIES, RUNTIMES, STRATEGIES, FleetSpec, HostSpec, IOCSpec, Limits, NetworkSpec
from orchestrator.spec.fields import Problems, check_choice, check_int, check_name, key_text, line_of, show, type_name, unknown_keys
from orchestrator.spec.model import STANDARD_PVS
from orchestrator.spec.pvs import PV_CHARS, check_pvs
from orchestrator.spec.real import check_real, resolve_readiness
from orchestrator.ca.env import addr_list  # env values are checked as the runtimes parse them

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_REPLICAS = 256
# Whole-fleet caps (issue 13, classes 1 and 13): the plan, the probe and `up` grow with IOC instances
# and served PVs; past these a fleet file is a mistake or an attack (aliases make large ones cheap to write).
MAX_TOTAL_IOCS = 1024
MAX_TOTAL_PVS = 100_000
MEMORY_RE = re.compile(r"^[0-9]+[bkmg]?$", re.IGNORECASE)
# Variables the plan owns: a fleet file that set them would silently break the plan.
PLAN_OWNED_ENV = (
    "EPICS_CA_SERVER_PORT",
    "EPICS_CAS_SERVER_PORT",
    "EPICS_CAS_INTF_ADDR_LIST",
    "EPICS_CAS_BEACON_ADDR_LIST",
    "EPICS_CAS_AUTO_BEACON_ADDR_LIST",
    "EPICS_CAS_BEACON_PORT",
    "EPICS_CA_REPEATER_PORT",
    # The IOC's own CA client searches where the fleet's clients do (plan.planner._planned): an `env`
    # entry here silently replaced the plan's list (issue 13, class 11).
    "EPICS_CA_ADDR_LIST",
    "EPICS_CA_AUTO_ADDR_LIST",
    "IOCFLEET_IOC",
    "IOCFLEET_DB",
    "IOCFLEET_GROUP",
    "IOCFLEET_IOC_FILE",
    "IOCFLEET_PACK",
    "IOCFLEET_PACK_FILE",
)
# EPICS variables whose values the runtimes parse at start: a value they cannot parse crash-loops the IOC
# (caproto raises on `EPICS_CAS_BEACON_PERIOD: soon`). (kind, low, high) per variable.
PARSED_ENV = {  # caproto converts these with int() or float() at start (caproto._utils._ENVIRONMENT_DEFAULTS)
    "EPICS_CAS_BEACON_PERIOD": ("number", 0.1, 3600.0),
    "EPICS_CA_BEACON_PERIOD": ("number", 0.1, 3600.0),
    "EPICS_CA_CONN_TMO": ("number", 0.1, 3600.0),
    "EPICS_PVA_CONN_TMO": ("number", 0.1, 3600.0),
    "EPICS_PVA_BEACON_PERIOD": ("number", 0.1, 3600.0),
    "EPICS_PVAS_BEACON_PERIOD": ("number", 0.1, 3600.0),
    "EPICS_CA_MAX_SEARCH_PERIOD": ("integer", 60, 3600),
    "EPICS_CA_MAX_ARRAY_BYTES": ("integer", 16384, 2**31 - 1),
    "EPICS_PVA_MAX_ARRAY_BYTES": ("integer", 16384, 2**31 - 1),
    "EPICS_PVAS_MAX_ARRAY_BYTES": ("integer", 16384, 2**31 - 1),
    "EPICS_TS_MIN_WEST": ("integer", -720, 720),
    "EPICS_PVA_DEBUG": ("integer", 0, 10),
    "EPICS_PVA_BROADCAST_PORT": ("integer", 1, 65535),
    "EPICS_PVA_SERVER_PORT": ("integer", 1, 65535),
    "EPICS_PVAS_SERVER_PORT": ("integer", 1, 65535),
    "EPICS_PVAS_BROADCAST_PORT": ("integer", 1, 65535),
    "EPICS_IOC_LOG_PORT": ("integer", 1, 65535),
    "EPICS_CA_AUTO_ARRAY_BYTES": ("yesno", 0, 0),
    "EPICS_CAS_IGNORE_ADDR_LIST": ("addresses", 0, 0),
}
MAX_ENV_VALUE = 16384  # one environment string; Linux refuses any over 128 KiB with E2BIG
MAX_ENV_TOTAL = 65536  # all of an IOC's `env`: the exec's whole environment must stay well under ARG_MAX
# Docker image references (github.com/distribution/reference): [domain[:port]/]path[:tag][@digest].
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
IMAGE_RE = re.compile(rf"(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*"
                      r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?")
MEMORY_MIN, MEMORY_MAX = 6 * 2**20, 2**40  # docker refuses under 6 MiB; 1 TiB is past any IOC

TOP_KEYS = ("fleet", "network", "hosts", "iocs", "pack", "pack_size")
HOST_KEYS = ("name", "interface", "address")
NETWORK_KEYS = ("interface", "strategy", "base_port", "clients", "fanout")
IOC_KEYS = ("name", "runtime", "prefix", "replicas", "pvs", "image", "command", "env", "user", "read_only", "limits",
            "restart", "host", "entrypoint", "workdir", "mounts", "stdin_open", "readiness", "db", "module",
            "python_path", "kwargs", "iocstats")
LIMIT_KEYS = ("memory", "pids")


def validate_text(text: str, source: str) -> FleetSpec:
    from yaml import YAMLError

    from orchestrator.spec.yamlsource import LimitError, load_yaml

    if not text.strip():
        raise SpecError([f"{source}:1: file: empty — write a fleet with `fleet:` and `iocs:` (see docs/fleet-file.md)"])
    try:
        loaded = load_yaml(text)
    except LimitError as exc:
        raise SpecError([f"{source}:{exc.line}: file: {exc.problem} — {exc.fix}"])
    except (RecursionError, MemoryError, ValueError) as exc:  # the YAML library's own limits (int digits)
        raise SpecError([f"{source}:1: file: cannot be read ({type(exc).__name__}) — simplify the YAML"])
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        what = show(getattr(exc, "problem", None) or str(exc).splitlines()[0], 120).strip("'\"")
        raise SpecError([f"{source}:{line}: file: not valid YAML ({what}) — fix the YAML syntax at that line"])
    problems = Problems(source)
    for line, key in loaded.duplicate_keys:
        problems.add(line, key_text(key), "duplicate key", "keep one of the entries")
    return _validate(loaded.data, problems)


def validate_data(data, source: str) -> FleetSpec:
    return _validate(data, Problems(source))


def _validate(data, problems: Problems) -> FleetSpec:
    if data is None:
        problems.add(1, "file", "empty", "write a fleet with `fleet:` and `iocs:` (see docs/fleet-file.md)")
        raise SpecError(problems.lines)
    if not isinstance(data, dict):
        problems.add(line_of(data, 0) or 1, "file", f"top level is a {type_name(data)}, not a mapping",
                     "start the file with `fleet: NAME` and `iocs:`")
        raise SpecError(problems.lines)
    unknown_keys(data, TOP_KEYS, "", problems)
    name = check_name(data, "fleet", "fleet", problems, required=True)
    network = _network(data.get("network"), line_of(data, "network"), problems)
    hosts = _hosts(data, problems)
    iocs = _iocs(data, problems)
    _totals(iocs, line_of(data, "iocs"), problems)
    known_hosts = {h.name for h in hosts}
    for index, ioc in enumerate(iocs):
        if ioc.host is not None and ioc.host not in known_hosts:
            problems.add(ioc.line, f"iocs[{index}].host", f"unknown host {show(ioc.host)}",
                         f"declare it under `hosts:` ({', '.join(sorted(known_hosts)) or 'none declared'})")
    pack, pack_size = _pack(data, problems)
    if problems.lines:
        raise SpecError(problems.lines)
    return FleetSpec(name=name, network=network, iocs=tuple(iocs), source=problems.source, hosts=tuple(hosts),
                     pack=pack, pack_size=pack_size)


def _pack(data: dict, problems: Problems) -> tuple[bool, int]:
    """`pack: true|false|N` and `pack_size: N` (issue 14): whether caproto IOCs run packed, and how many per
    process at most. `pack: N` is `pack: true` with `pack_size: N`."""
    fix = f"use a whole number from 1 to {PACK_SIZE_MAX} (default {PACK_SIZE_DEFAULT})"
    size = check_int(data, "pack_size", "pack_size", PACK_SIZE_DEFAULT, 1, PACK_SIZE_MAX, problems, fix)
    value = data.get("pack", False)
    if isinstance(value, bool):
        return value, size
    if "pack_size" in data:
        problems.add(line_of(data, "pack"), "pack", "is a number and `pack_size` is set too",
                     "write `pack: true` with `pack_size: N`, or only `pack: N`")
        return True, size
    if not isinstance(value, int):
        problems.add(line_of(data, "pack"), "pack", f"expected true, false or a pack size, got {type_name(value)} "
                     f"{show(value)}", f"write `pack: true` (packs of {PACK_SIZE_DEFAULT}) or `pack: N` with N from 1 to "
                     f"{PACK_SIZE_MAX}")
        return False, size
    return True, check_int(data, "pack", "pack", PACK_SIZE_DEFAULT, 1, PACK_SIZE_MAX, problems, fix)


def _totals(iocs: list[IOCSpec], line: int, problems: Problems) -> None:
    instances = sum(i.replicas for i in iocs)
    if instances > MAX_TOTAL_IOCS:
        problems.add(line, "iocs", f"{instances} IOC instances (replicas counted) is over the limit of {MAX_TOTAL_IOCS}",
                     "split the fleet into several fleets")
    served = sum(i.replicas * (len(i.pvs) + 2) for i in iocs)  # + HEARTBEAT and UPTIME
    if served > MAX_TOTAL_PVS:
        problems.add(line, "iocs", f"{served} served PVs (replicas counted) is over the limit of {MAX_TOTAL_PVS}",
                     "use fewer replicas or PVs, or split the fleet")


def _hosts(data: dict, problems: Problems) -> list[HostSpec]:
    import ipaddress

    hosts = data.get("hosts")
    if hosts is None:
        return []
    if not isinstance(hosts, list):
        problems.add(line_of(data, "hosts"), "hosts", "expected a list of hosts",
                     "write `hosts:` followed by `- name: HOST` entries")
        return []
    result, seen, seen_addresses = [], set(), {}
    for index, item in enumerate(hosts):
        where, line = f"hosts[{index}]", line_of(hosts, index)
        if not isinstance(item, dict):
            problems.add(line, where, "expected a mapping", "write `- {name: HOST, interface: eth0, address: 10.0.1.5/24}`")
            continue
        unknown_keys(item, HOST_KEYS, f"{where}.", problems)
        name = check_name(item, "name", f"{where}.name", problems, required=True)
        if name in seen:
            problems.add(line_of(item, "name"), f"{where}.name", f"duplicate host {show(name)}", "give every host a unique name")
        seen.add(name)
        interface = item.get("interface", "auto")
        if not isinstance(interface, str) or not interface or len(interface) > 15:
            problems.add(line_of(item, "interface"), f"{where}.interface", f"{show(interface)} is not an interface name",
                         "use the host's interface name, e.g. eth0")
        address = item.get("address")
        if address is not None:
            why = _host_address_problem(address)
            if why is None and str(ipaddress.IPv4Interface(address).ip) in seen_addresses:
                why = f"is also the address of {seen_addresses[str(ipaddress.IPv4Interface(address).ip)]}"
            if why:
                problems.add(line_of(item, "address"), f"{where}.address", f"{show(address)} {why}",
                             "write the host's own IPv4 address as CIDR, e.g. 10.0.1.5/24")
                address = None
            else:
                seen_addresses[str(ipaddress.IPv4Interface(address).ip)] = where
        result.append(HostSpec(name=name, interface=str(interface), address=address))
    return result


def _host_address_problem(address) -> str | None:
    """Why `address` cannot be a host's interface address (CIDR), or None."""
    import ipaddress

    if not isinstance(address, str) or "/" not in address or not address.isascii():
        return "is not an IPv4 address with prefix"
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        return "is not an IPv4 address with prefix"
    ip, net = iface.ip, iface.network
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "is not an address a host interface can have (unspecified, multicast or reserved)"
    if net.prefixlen < 31 and ip in (net.network_address, net.broadcast_address):
        return f"is the {'network' if ip == net.network_address else 'broadcast'} address of {net}, not a host's"
    if net.prefixlen < 8:
        return "has a prefix shorter than /8, not a subnet a CA broadcast should cover"
    return None


def _network(data, line: int, problems: Problems) -> NetworkSpec:
    if data is None:
        return NetworkSpec()
    if not isinstance(data, dict):
        problems.add(line, "network", f"expected a mapping, got {type_name(data)}",
                     "write `network: {interface: auto, strategy: auto}`")
        return NetworkSpec()
    unknown_keys(data, NETWORK_KEYS, "network.", problems)
    interface = data.get("interface", "auto")
    if not isinstance(interface, str) or not interface or len(interface) > 15 or " " in interface:
        problems.add(line_of(data, "interface"), "network.interface", f"{show(interface)} is not an interface name",
                     "use `auto` or a name from `iocfleet interfaces`")
        interface = "auto"
    return NetworkSpec(
        interface=interface,
        strategy=check_choice(data, "strategy", "network.strategy", STRATEGIES, "auto", problems),
        base_port=_base_port(data, problems),
        clients=check_choice(data, "clients", "network.clients", CLIENT_PLACES, "auto", problems),
        fanout=check_choice(data, "fanout", "network.fanout", FANOUTS, "none", problems),
    )


def _base_port(data: dict, problems: Problems) -> int:
    port = check_int(data, "base_port", "network.base_port", 5064, 1024, 65535 - MAX_REPLICAS, problems,
                     "use a port from 1024 to 65279 (the CA default is 5064)")
    if port == 5065:  # the CA repeater's port (R12): an IOC there shares it with the repeater
        problems.add(line_of(data, "base_port"), "network.base_port", "5065 is the CA repeater's port",
                     "use 5064 (the CA default) or a port above 5065")
        return 5064
    return port


def _iocs(data: dict, problems: Problems) -> list[IOCSpec]:
    iocs = data.get("iocs")
    line = line_of(data, "iocs")
    if iocs is None:
        problems.add(line or 1, "iocs", "missing", "add `iocs:` with at least one IOC")
        return []
    if not isinstance(iocs, list) or not iocs:
        problems.add(line, "iocs", "expected a non-empty list of IOCs", "add at least one `- name: ...` entry")
        return []
    result, seen = [], {}
    for index, item in enumerate(iocs):
        where = f"iocs[{index}]"
        item_line = line_of(iocs, index)
        if not isinstance(item, dict):
            problems.add(item_line, where, f"expected a mapping, got {type_name(item)}",
                         "write `- name: NAME` with `runtime`, `prefix` and `pvs`")
            continue
        ioc = _ioc(item, where, item_line, problems)
        if ioc.name and ioc.name in seen:
            problems.add(line_of(item, "name"), f"{where}.name", f"duplicate IOC name {show(ioc.name)} (also iocs[{seen[ioc.name]}])",
                         "give every IOC a unique name")
        elif ioc.name:
            seen[ioc.name] = index
        result.append(ioc)
    return result


def _ioc(item: dict, where: str, line: int, problems: Problems) -> IOCSpec:
    unknown_keys(item, IOC_KEYS, f"{where}.", problems)
    name = check_name(item, "name", f"{where}.name", problems, required=True)
    runtime = item.get("runtime", "caproto")
    if runtime not in RUNTIMES:
        close = difflib.get_close_matches(str(runtime), RUNTIMES, n=1)
        problems.add(line_of(item, "runtime"), f"{where}.runtime", f"unknown runtime {show(runtime)}",
                     f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(RUNTIMES)}")
        runtime = "caproto"
    if item.get("prefix") is None and (runtime == "image" or "db" in item or "module" in item):
        # real IOCs name their PVs themselves: the prefix is optional (a .db softioc's own HEARTBEAT and
        # UPTIME then live under NAME:, so two such IOCs do not collide)
        prefix = f"{name}:" if runtime == "softioc" and name else ""
    else:
        prefix = _prefix(item, where, problems)
    replicas = check_int(item, "replicas", f"{where}.replicas", 1, 1, MAX_REPLICAS, problems,
                    f"use 1 to {MAX_REPLICAS} replicas per IOC entry")
    image = item.get("image")
    if image is not None and (not isinstance(image, str) or len(image) > 255 or not IMAGE_RE.fullmatch(image)):
        problems.add(line_of(item, "image"), f"{where}.image", f"{show(image)} is not an image reference",
                     "write an image name like `registry:5000/ioc:1.0` (lower-case path, optional :tag and @sha256:…)")
        image = None
    if runtime == "image" and not image:
        problems.add(line, f"{where}.image", "the `image` runtime needs an image",
                     "add `image: NAME:TAG` or use runtime caproto/softioc")
    command = _command(item, where, problems)
    env = _env(item, where, problems, runtime)
    user = item.get("user")
    if user is not None and (not isinstance(user, (str, int)) or not re.fullmatch(r"[0-9]+(:[0-9]+)?|[a-z_][a-z0-9_-]*", str(user))):
        problems.add(line_of(item, "user"), f"{where}.user", f"{show(user)} is not a user",
                     "use a numeric UID[:GID] (all IOCs of a shared port need the same UID, R2)")
        user = None
    read_only = item.get("read_only", True)
    if not isinstance(read_only, bool):
        problems.add(line_of(item, "read_only"), f"{where}.read_only", f"{read_only!r} is not true or false",
                     "write `read_only: false` for an image that must write outside /tmp, or leave it out")
        read_only = True
    builtin = runtime in ("caproto", "softioc") and "module" not in item
    pvs = check_pvs(item, where, prefix, problems, replicas, reserved=STANDARD_PVS if builtin else ())
    real = check_real(item, where, runtime, prefix, len(pvs), problems.source, problems)
    served = len(pvs) + sum(len(d.records) for d in real.get("db", ())) + (
        len(real["group"].pvs) if real.get("group") else 0) + (2 if builtin else 0)
    real["readiness"] = resolve_readiness(item, where, served, problems)
    restart = check_choice(item, "restart", f"{where}.restart", RESTART_POLICIES, "on-failure", problems)
    host = item.get("host")
    if host is not None and not isinstance(host, str):
        problems.add(line_of(item, "host"), f"{where}.host", "expected a host name", "use a name from `hosts:`")
        host = None
    iocstats = _iocstats(item, where, runtime, prefix, replicas, pvs, problems)
    return IOCSpec(name=name, runtime=runtime, prefix=prefix, replicas=replicas, pvs=tuple(pvs),
                   image=image, command=command, env=env, user=None if user is None else str(user),
                   limits=_limits(item, where, problems), restart=restart, host=host, line=line,
                   read_only=read_only, iocstats=iocstats, **real)



def _iocstats(item: dict, where: str, runtime: str, prefix: str, replicas: int, pvs, problems: Problems):
    """`iocstats: NAME | false`; checks the name, and that no declared PV takes an iocStats name."""
    from orchestrator.spec import iocstats as stats

    value = item.get("iocstats")
    line = line_of(item, "iocstats") or line_of(item, "prefix")
    if value is False:
        return False
    if value is not None:
        problem = stats.name_problem(value)
        if value is True:
            problem = "true is not a name"
        if problem:
            problems.add(line, f"{where}.iocstats", problem,
                         "write `iocstats: BL1-IOC-01` (PVs BL1-IOC-01:HEARTBEAT, ...) or `iocstats: false`")
            return None
        if replicas > 1 and "{i}" not in value:
            problems.add(line, f"{where}.iocstats", f"{replicas} replicas would serve the same iocStats PVs",
                         "put `{i}` in the name (the replica number), e.g. `iocstats: BL1-IOC-{i}`")
            return None
    if not prefix or (value is None and runtime == "image"):
        return value
    expanded = prefix.replace("{i}", "1") if "{i}" in prefix or replicas == 1 else f"{prefix}1:"
    name = value.replace("{i}", "1") if value else stats.default_name(expanded)
    if value is None and stats.name_problem(name):
        # A prefix too long (or odd) for iocStats names: the IOC keeps the old PREFIX+HEARTBEAT/UPTIME only,
        # so a fleet file that was valid before iocStats stays valid (docs/operate.md); `iocstats: NAME` opts in.
        return False
    taken = set(stats.names(name, runtime)) - {expanded + s for s in stats.LEGACY_PVS}
    for index, pv in enumerate(pvs):
        if expanded + pv.name in taken:
            problems.add(line, f"{where}.pvs ({pv.name})", f"PV {expanded + pv.name!r} is also an iocStats PV "
                         f"of this IOC (iocstats {name!r})", "rename the PV, or set another `iocstats:` name")
    return value


def _prefix(item: dict, where: str, problems: Problems) -> str:
    prefix = item.get("prefix")
    line = line_of(item, "prefix")
    if prefix is None or prefix == "":
        problems.add(line, f"{where}.prefix", "empty prefix" if prefix == "" else "missing",
                     "add a unique PV prefix such as `BL1:MOTOR:`")
        return ""
    if not isinstance(prefix, str):
        problems.add(line, f"{where}.prefix", f"expected a string, got {type_name(prefix)}",
                     "quote it, e.g. `prefix: \"BL1:\"`")
        return ""
    plain = prefix.replace("{i}", "")
    if plain and not PV_CHARS.fullmatch(plain):
        problems.add(line, f"{where}.prefix", f"{show(prefix)} has characters not allowed in PV names",
                     "use letters, digits and _ - : [ ] < > ; . only (no spaces, quotes, $ or parentheses)")
        return ""
    return prefix


def _command(item: dict, where: str, problems: Problems) -> tuple[str, ...]:
    command = item.get("command")
    if command is None:
        return ()
    if isinstance(command, str):
        problems.add(line_of(item, "command"), f"{where}.command", "a shell string is not accepted",
                     "write the command as a list of arguments, e.g. [\"/ioc/st.cmd\"]")
        return ()
    if not isinstance(command, list) or not all(isinstance(a, str) and "\0" not in a for a in command):
        problems.add(line_of(item, "command"), f"{where}.command", "expected a list of strings",
                     "write the command as a list of arguments")
        return ()
    if len(command) > 256 or sum(len(a) + 1 for a in command) > MAX_ENV_TOTAL or any(len(a) > MAX_ENV_VALUE for a in command):
        problems.add(line_of(item, "command"), f"{where}.command",
                     f"too long ({len(command)} arguments, {sum(len(a) for a in command)} characters)",
                     f"at most 256 arguments of {MAX_ENV_VALUE} characters, {MAX_ENV_TOTAL} in all; "
                     "large data belongs in a file")
        return ()
    return tuple(command)


def _env(item: dict, where: str, problems: Problems, runtime: str | None = None) -> tuple[tuple[str, str], ...]:
    # iocfleet's programs read IOCFLEET_*; an `image` IOC runs its own program, so those names are its own
    owned = PLAN_OWNED_ENV if runtime != "image" else tuple(k for k in PLAN_OWNED_ENV if not k.startswith("IOCFLEET_"))
    env = item.get("env")
    if env is None:
        return ()
    if not isinstance(env, dict):
        problems.add(line_of(item, "env"), f"{where}.env", f"expected a mapping, got {type_name(env)}",
                     "write `env: {NAME: value}`")
        return ()
    out = []
    for key, value in env.items():
        line = line_of(env, key)
        if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
            problems.add(line, f"{where}.env.{key_text(key)}",
                         "not a valid environment variable name",
                         "use letters, digits and _ , not starting with a digit")
        elif key in owned:
            problems.add(line, f"{where}.env.{key}", "is set by the plan",
                         "remove it; use `network:` (interface, strategy, base_port) instead")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.add(line, f"{where}.env.{key}", f"expected a string value, got {type_name(value)}",
                         "quote the value")
        elif "\0" in str(value):
            problems.add(line, f"{where}.env.{key}", "contains a NUL character",
                         "remove it: an environment value cannot hold NUL")
        elif isinstance(value, float) and not _finite(value):
            problems.add(line, f"{where}.env.{key}", f"{show(value)} is not a number a program can read",
                         "quote the value, or give a finite number")
        elif len(str(value)) > MAX_ENV_VALUE:
            problems.add(line, f"{where}.env.{key}", f"value of {len(str(value))} characters is over {MAX_ENV_VALUE}",
                         "pass large data in a file (mount or image), not in the environment")
        else:
            why = _parsed_env_problem(key, str(value))
            if why:
                problems.add(line, f"{where}.env.{key}", f"{show(str(value))} {why}",
                             "give a value the runtime can parse, or remove it")
            else:
                out.append((key, str(value)))
    total = sum(len(k) + len(v) + 2 for k, v in out)
    if total > MAX_ENV_TOTAL:
        problems.add(line_of(item, "env"), f"{where}.env", f"{total} characters in all is over {MAX_ENV_TOTAL}",
                     "pass large data in a file (mount or image), not in the environment")
    return tuple(out)


def _finite(value) -> bool:
    import math

    return math.isfinite(value)


def _parsed_env_problem(key: str, value: str) -> str | None:
    if key not in PARSED_ENV:
        return None
    kind, low, high = PARSED_ENV[key]
    text = value.strip()
    if kind == "yesno":
        return None if text.upper() in ("YES", "NO") else "is not YES or NO"
    if kind == "addresses":
        try:
            addr_list(text, 5064, key)
        except UsageError as exc:
            return f"is not a list of IPv4 addresses ({exc.what.split(' ', 3)[-1][:60]})"
        return None
    import re as _re

    number = None
    if kind == "integer" and _re.fullmatch(r"[-+]?[0-9]{1,10}", text):
        number = int(text)
    elif kind == "number" and _re.fullmatch(r"[-+]?(?:[0-9]{1,10}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?", text):
        number = float(text)
    if number is None or not _finite(number) or not low <= number <= high:
        return f"is not {'an integer' if kind == 'integer' else 'a number'} from {low:g} to {high:g}"
    return None


def _memory_bytes(memory: str) -> int:
    unit = memory[-1].lower()
    scale = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
    return int(memory[:-1]) * scale[unit] if unit in scale else int(memory)


def _limits(item: dict, where: str, problems: Problems) -> Limits:
    limits = item.get("limits")
    if limits is None:
        return Limits()
    if not isinstance(limits, dict):
        problems.add(line_of(item, "limits"), f"{where}.limits", "expected a mapping",
                     "write `limits: {memory: 256m, pids: 256}`")
        return Limits()
    unknown_keys(limits, LIMIT_KEYS, f"{where}.limits.", problems)
    memory = limits.get("memory")
    if memory is not None and not (isinstance(memory, str) and MEMORY_RE.fullmatch(memory)
                                   and len(memory) <= 16 and MEMORY_MIN <= _memory_bytes(memory) <= MEMORY_MAX):
        problems.add(line_of(limits, "memory"), f"{where}.limits.memory", f"{show(memory)} is not a memory size",
                     "write a size from 6m to 1024g, like 256m or 1g (docker refuses under 6 MiB)")
        memory = None
    pids = None
    if "pids" in limits:
        pids = check_int(limits, "pids", f"{where}.limits.pids", 256, 16, 65536, problems, "use 16 to 65536")
    return Limits(memory=memory, pids=pids)


