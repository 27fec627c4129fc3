"""Validation of the fleet file: every problem found, each as `FILE:LINE: field: problem — fix`."""

from __future__ import annotations

import difflib
import re

from orchestrator.errors import SpecError
from orchestrator.spec.model import CLIENT_PLACES, FANOUTS, RESTART_POLICIES, RUNTIMES, STRATEGIES, FleetSpec, HostSpec, IOCSpec, Limits, NetworkSpec
from orchestrator.spec.fields import Problems, check_choice, check_int, check_name, line_of, type_name, unknown_keys
from orchestrator.spec.pvs import PV_CHARS, check_pvs

ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_REPLICAS = 256
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
    "IOCFLEET_IOC",
)

TOP_KEYS = ("fleet", "network", "hosts", "iocs")
HOST_KEYS = ("name", "interface", "address")
NETWORK_KEYS = ("interface", "strategy", "base_port", "clients", "fanout")
IOC_KEYS = ("name", "runtime", "prefix", "replicas", "pvs", "image", "command", "env", "user", "limits", "restart",
            "host")
LIMIT_KEYS = ("memory", "pids")


def validate_text(text: str, source: str) -> FleetSpec:
    from yaml import YAMLError

    from orchestrator.spec.yamlsource import load_yaml

    if not text.strip():
        raise SpecError([f"{source}:1: file: empty — write a fleet with `fleet:` and `iocs:` (see docs/fleet-file.md)"])
    try:
        loaded = load_yaml(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{source}:{line}: file: not valid YAML ({what}) — fix the YAML syntax at that line"])
    problems = Problems(source)
    for line, key in loaded.duplicate_keys:
        problems.add(line, key, "duplicate key", "keep one of the entries")
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
    known_hosts = {h.name for h in hosts}
    for index, ioc in enumerate(iocs):
        if ioc.host is not None and ioc.host not in known_hosts:
            problems.add(ioc.line, f"iocs[{index}].host", f"unknown host {ioc.host!r}",
                         f"declare it under `hosts:` ({', '.join(sorted(known_hosts)) or 'none declared'})")
    if problems.lines:
        raise SpecError(problems.lines)
    return FleetSpec(name=name, network=network, iocs=tuple(iocs), source=problems.source, hosts=tuple(hosts))


def _hosts(data: dict, problems: Problems) -> list[HostSpec]:
    import ipaddress

    hosts = data.get("hosts")
    if hosts is None:
        return []
    if not isinstance(hosts, list):
        problems.add(line_of(data, "hosts"), "hosts", "expected a list of hosts",
                     "write `hosts:` followed by `- name: HOST` entries")
        return []
    result, seen = [], set()
    for index, item in enumerate(hosts):
        where, line = f"hosts[{index}]", line_of(hosts, index)
        if not isinstance(item, dict):
            problems.add(line, where, "expected a mapping", "write `- {name: HOST, interface: eth0, address: 10.0.1.5/24}`")
            continue
        unknown_keys(item, HOST_KEYS, f"{where}.", problems)
        name = check_name(item, "name", f"{where}.name", problems, required=True)
        if name in seen:
            problems.add(line_of(item, "name"), f"{where}.name", f"duplicate host {name!r}", "give every host a unique name")
        seen.add(name)
        interface = item.get("interface", "auto")
        if not isinstance(interface, str) or not interface or len(interface) > 15:
            problems.add(line_of(item, "interface"), f"{where}.interface", f"{interface!r} is not an interface name",
                         "use the host's interface name, e.g. eth0")
        address = item.get("address")
        if address is not None:
            try:
                ipaddress.IPv4Interface(str(address))
                if "/" not in str(address):
                    raise ValueError
            except ValueError:
                problems.add(line_of(item, "address"), f"{where}.address", f"{address!r} is not an IPv4 address with prefix",
                             "write it as CIDR, e.g. 10.0.1.5/24")
                address = None
        result.append(HostSpec(name=name, interface=str(interface), address=address))
    return result


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
        problems.add(line_of(data, "interface"), "network.interface", f"{interface!r} is not an interface name",
                     "use `auto` or a name from `iocfleet interfaces`")
        interface = "auto"
    return NetworkSpec(
        interface=interface,
        strategy=check_choice(data, "strategy", "network.strategy", STRATEGIES, "auto", problems),
        base_port=check_int(data, "base_port", "network.base_port", 5064, 1024, 65535 - MAX_REPLICAS, problems,
                       "use a port from 1024 to 65279 (the CA default is 5064)"),
        clients=check_choice(data, "clients", "network.clients", CLIENT_PLACES, "auto", problems),
        fanout=check_choice(data, "fanout", "network.fanout", FANOUTS, "none", problems),
    )


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
            problems.add(line_of(item, "name"), f"{where}.name", f"duplicate IOC name {ioc.name!r} (also iocs[{seen[ioc.name]}])",
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
        problems.add(line_of(item, "runtime"), f"{where}.runtime", f"unknown runtime {runtime!r}",
                     f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(RUNTIMES)}")
        runtime = "caproto"
    prefix = _prefix(item, where, problems)
    replicas = check_int(item, "replicas", f"{where}.replicas", 1, 1, MAX_REPLICAS, problems,
                    f"use 1 to {MAX_REPLICAS} replicas per IOC entry")
    image = item.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image)):
        problems.add(line_of(item, "image"), f"{where}.image", f"{image!r} is not an image reference",
                     "write an image name like `registry/ioc:1.0`")
        image = None
    if runtime == "image" and not image:
        problems.add(line, f"{where}.image", "the `image` runtime needs an image",
                     "add `image: NAME:TAG` or use runtime caproto/softioc")
    command = _command(item, where, problems)
    env = _env(item, where, problems)
    user = item.get("user")
    if user is not None and (not isinstance(user, (str, int)) or not re.match(r"^[0-9]+(:[0-9]+)?$|^[a-z_][a-z0-9_-]*$", str(user))):
        problems.add(line_of(item, "user"), f"{where}.user", f"{user!r} is not a user",
                     "use a numeric UID[:GID] (all IOCs of a shared port need the same UID, R2)")
        user = None
    pvs = check_pvs(item, where, prefix, problems)
    restart = check_choice(item, "restart", f"{where}.restart", RESTART_POLICIES, "on-failure", problems)
    host = item.get("host")
    if host is not None and not isinstance(host, str):
        problems.add(line_of(item, "host"), f"{where}.host", "expected a host name", "use a name from `hosts:`")
        host = None
    return IOCSpec(name=name, runtime=runtime, prefix=prefix, replicas=replicas, pvs=tuple(pvs),
                   image=image, command=command, env=env, user=None if user is None else str(user),
                   limits=_limits(item, where, problems), restart=restart, host=host, line=line)


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
    if plain and not PV_CHARS.match(plain):
        problems.add(line, f"{where}.prefix", f"{prefix!r} has characters not allowed in PV names",
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
    return tuple(command)


def _env(item: dict, where: str, problems: Problems) -> tuple[tuple[str, str], ...]:
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
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            problems.add(line, f"{where}.env.{key}", "not a valid environment variable name",
                         "use letters, digits and _ , not starting with a digit")
        elif key in PLAN_OWNED_ENV:
            problems.add(line, f"{where}.env.{key}", "is set by the plan",
                         "remove it; use `network:` (interface, strategy, base_port) instead")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool) or "\0" in str(value):
            problems.add(line, f"{where}.env.{key}", f"expected a string value, got {type_name(value)}",
                         "quote the value")
        else:
            out.append((key, str(value)))
    return tuple(out)


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
    if memory is not None and not (isinstance(memory, str) and MEMORY_RE.match(memory)):
        problems.add(line_of(limits, "memory"), f"{where}.limits.memory", f"{memory!r} is not a memory size",
                     "write a size like 256m or 1g")
        memory = None
    pids = None
    if "pids" in limits:
        pids = check_int(limits, "pids", f"{where}.limits.pids", 256, 16, 65536, problems, "use 16 to 65536")
    return Limits(memory=memory, pids=pids)


