"""Validation of the fleet file: every problem found, each as `FILE:LINE: field: problem — fix`."""

from __future__ import annotations

import difflib
import re

from .errors import SpecError
from .spec import (
    CLIENT_PLACES,
    PV_TYPES,
    RUNTIMES,
    SIMULATIONS,
    STANDARD_PVS,
    STRATEGIES,
    FleetSpec,
    IOCSpec,
    Limits,
    NetworkSpec,
    PVSpec,
)

# EPICS record and PV names: at most 60 characters (PVNAME_STRINGSZ 61 with the NUL), no spaces, quotes
# or macro characters; these are the characters EPICS base accepts in record names.
PV_NAME_MAX = 60
PV_CHARS = re.compile(r"^[A-Za-z0-9_\-+:\[\]<>;.]+$")
# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]+; we also keep them short enough for labels and
# Kubernetes object names once the fleet name is prepended.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_REPLICAS = 256
MAX_COUNT = 1_000_000
MAX_RATE_HZ = 100.0
ENUM_MAX_STRINGS = 16
ENUM_STRING_MAX = 25
STRING_VALUE_MAX = 39
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

TOP_KEYS = ("fleet", "network", "iocs")
NETWORK_KEYS = ("interface", "strategy", "base_port", "clients")
IOC_KEYS = ("name", "runtime", "prefix", "replicas", "pvs", "image", "command", "env", "user", "limits")
PV_KEYS = ("name", "type", "value", "count", "sim", "rate_hz", "enum_strings", "writable")
LIMIT_KEYS = ("memory", "pids")


class _Problems:
    """Collects problems with the file and line they refer to."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, line: int, field: str, problem: str, fix: str) -> None:
        self.lines.append(f"{self.source}:{line}: {field}: {problem} — {fix}")


def _line(container, key) -> int:
    getter = getattr(container, "line_of", None)
    return getter(key) if getter else 0


def _type_name(value) -> str:
    names = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "list"), (dict, "mapping"))
    if value is None:
        return "null"
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


def validate_text(text: str, source: str) -> FleetSpec:
    from yaml import YAMLError

    from .yamlsource import load_yaml

    if not text.strip():
        raise SpecError([f"{source}:1: file: empty — write a fleet with `fleet:` and `iocs:` (see docs/fleet-file.md)"])
    try:
        loaded = load_yaml(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{source}:{line}: file: not valid YAML ({what}) — fix the YAML syntax at that line"])
    problems = _Problems(source)
    for line, key in loaded.duplicate_keys:
        problems.add(line, key, "duplicate key", "keep one of the entries")
    return _validate(loaded.data, problems)


def validate_data(data, source: str) -> FleetSpec:
    return _validate(data, _Problems(source))


def _validate(data, problems: _Problems) -> FleetSpec:
    if data is None:
        problems.add(1, "file", "empty", "write a fleet with `fleet:` and `iocs:` (see docs/fleet-file.md)")
        raise SpecError(problems.lines)
    if not isinstance(data, dict):
        problems.add(_line(data, 0) or 1, "file", f"top level is a {_type_name(data)}, not a mapping",
                     "start the file with `fleet: NAME` and `iocs:`")
        raise SpecError(problems.lines)
    _unknown_keys(data, TOP_KEYS, "", problems)
    name = _name(data, "fleet", "fleet", problems, required=True)
    network = _network(data.get("network"), _line(data, "network"), problems)
    iocs = _iocs(data, problems)
    if problems.lines:
        raise SpecError(problems.lines)
    return FleetSpec(name=name, network=network, iocs=tuple(iocs), source=problems.source)


def _unknown_keys(mapping: dict, known: tuple[str, ...], where: str, problems: _Problems) -> None:
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            fix = f"did you mean `{close[0]}`?" if close else f"remove it; known keys: {', '.join(known)}"
            problems.add(_line(mapping, key), f"{where}{key}", "unknown key", fix)


def _name(mapping: dict, key: str, field: str, problems: _Problems, required: bool) -> str:
    value = mapping.get(key)
    line = _line(mapping, key)
    if value is None:
        if required:
            problems.add(line, field, "missing", f"add `{key}: NAME` (letters, digits, _ . -)")
        return ""
    if not isinstance(value, str) or not NAME_RE.match(value):
        problems.add(line, field, f"{value!r} is not a valid container name",
                     "use 1-63 characters: a letter or digit, then letters, digits, _ . -")
        return ""
    return value


def _choice(mapping: dict, key: str, field: str, choices, default: str, problems: _Problems) -> str:
    value = mapping.get(key, default)
    if value not in choices:
        problems.add(_line(mapping, key), field, f"{value!r} is not one of {', '.join(choices)}",
                     f"use one of: {', '.join(choices)}")
        return default
    return value


def _int(mapping: dict, key: str, field: str, default: int, low: int, high: int, problems: _Problems,
         fix: str) -> int:
    value = mapping.get(key, default)
    line = _line(mapping, key)
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(line, field, f"expected an integer, got {_type_name(value)} {value!r}", fix)
        return default
    if not low <= value <= high:
        problems.add(line, field, f"{value} is out of range {low}..{high}", fix)
        return default
    return value


def _network(data, line: int, problems: _Problems) -> NetworkSpec:
    if data is None:
        return NetworkSpec()
    if not isinstance(data, dict):
        problems.add(line, "network", f"expected a mapping, got {_type_name(data)}",
                     "write `network: {interface: auto, strategy: auto}`")
        return NetworkSpec()
    _unknown_keys(data, NETWORK_KEYS, "network.", problems)
    interface = data.get("interface", "auto")
    if not isinstance(interface, str) or not interface or len(interface) > 15 or " " in interface:
        problems.add(_line(data, "interface"), "network.interface", f"{interface!r} is not an interface name",
                     "use `auto` or a name from `iocfleet interfaces`")
        interface = "auto"
    return NetworkSpec(
        interface=interface,
        strategy=_choice(data, "strategy", "network.strategy", STRATEGIES, "auto", problems),
        base_port=_int(data, "base_port", "network.base_port", 5064, 1024, 65535 - MAX_REPLICAS, problems,
                       "use a port from 1024 to 65279 (the CA default is 5064)"),
        clients=_choice(data, "clients", "network.clients", CLIENT_PLACES, "auto", problems),
    )


def _iocs(data: dict, problems: _Problems) -> list[IOCSpec]:
    iocs = data.get("iocs")
    line = _line(data, "iocs")
    if iocs is None:
        problems.add(line or 1, "iocs", "missing", "add `iocs:` with at least one IOC")
        return []
    if not isinstance(iocs, list) or not iocs:
        problems.add(line, "iocs", "expected a non-empty list of IOCs", "add at least one `- name: ...` entry")
        return []
    result, seen = [], {}
    for index, item in enumerate(iocs):
        where = f"iocs[{index}]"
        item_line = _line(iocs, index)
        if not isinstance(item, dict):
            problems.add(item_line, where, f"expected a mapping, got {_type_name(item)}",
                         "write `- name: NAME` with `runtime`, `prefix` and `pvs`")
            continue
        ioc = _ioc(item, where, item_line, problems)
        if ioc.name and ioc.name in seen:
            problems.add(_line(item, "name"), f"{where}.name", f"duplicate IOC name {ioc.name!r} (also iocs[{seen[ioc.name]}])",
                         "give every IOC a unique name")
        elif ioc.name:
            seen[ioc.name] = index
        result.append(ioc)
    return result


def _ioc(item: dict, where: str, line: int, problems: _Problems) -> IOCSpec:
    _unknown_keys(item, IOC_KEYS, f"{where}.", problems)
    name = _name(item, "name", f"{where}.name", problems, required=True)
    runtime = item.get("runtime", "caproto")
    if runtime not in RUNTIMES:
        close = difflib.get_close_matches(str(runtime), RUNTIMES, n=1)
        problems.add(_line(item, "runtime"), f"{where}.runtime", f"unknown runtime {runtime!r}",
                     f"did you mean `{close[0]}`?" if close else f"use one of: {', '.join(RUNTIMES)}")
        runtime = "caproto"
    prefix = _prefix(item, where, problems)
    replicas = _int(item, "replicas", f"{where}.replicas", 1, 1, MAX_REPLICAS, problems,
                    f"use 1 to {MAX_REPLICAS} replicas per IOC entry")
    image = item.get("image")
    if image is not None and (not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image)):
        problems.add(_line(item, "image"), f"{where}.image", f"{image!r} is not an image reference",
                     "write an image name like `registry/ioc:1.0`")
        image = None
    if runtime == "image" and not image:
        problems.add(line, f"{where}.image", "the `image` runtime needs an image",
                     "add `image: NAME:TAG` or use runtime caproto/softioc")
    command = _command(item, where, problems)
    env = _env(item, where, problems)
    user = item.get("user")
    if user is not None and (not isinstance(user, (str, int)) or not re.match(r"^[0-9]+(:[0-9]+)?$|^[a-z_][a-z0-9_-]*$", str(user))):
        problems.add(_line(item, "user"), f"{where}.user", f"{user!r} is not a user",
                     "use a numeric UID[:GID] (all IOCs of a shared port need the same UID, R2)")
        user = None
    pvs = _pvs(item, where, prefix, problems)
    return IOCSpec(name=name, runtime=runtime, prefix=prefix, replicas=replicas, pvs=tuple(pvs),
                   image=image, command=command, env=env, user=None if user is None else str(user),
                   limits=_limits(item, where, problems), line=line)


def _prefix(item: dict, where: str, problems: _Problems) -> str:
    prefix = item.get("prefix")
    line = _line(item, "prefix")
    if prefix is None or prefix == "":
        problems.add(line, f"{where}.prefix", "empty prefix" if prefix == "" else "missing",
                     "add a unique PV prefix such as `BL1:MOTOR:`")
        return ""
    if not isinstance(prefix, str):
        problems.add(line, f"{where}.prefix", f"expected a string, got {_type_name(prefix)}",
                     "quote it, e.g. `prefix: \"BL1:\"`")
        return ""
    plain = prefix.replace("{i}", "")
    if plain and not PV_CHARS.match(plain):
        problems.add(line, f"{where}.prefix", f"{prefix!r} has characters not allowed in PV names",
                     "use letters, digits and _ - + : [ ] < > ; . only (no spaces, quotes, $ or parentheses)")
        return ""
    return prefix


def _command(item: dict, where: str, problems: _Problems) -> tuple[str, ...]:
    command = item.get("command")
    if command is None:
        return ()
    if isinstance(command, str):
        problems.add(_line(item, "command"), f"{where}.command", "a shell string is not accepted",
                     "write the command as a list of arguments, e.g. [\"/ioc/st.cmd\"]")
        return ()
    if not isinstance(command, list) or not all(isinstance(a, str) and "\0" not in a for a in command):
        problems.add(_line(item, "command"), f"{where}.command", "expected a list of strings",
                     "write the command as a list of arguments")
        return ()
    return tuple(command)


def _env(item: dict, where: str, problems: _Problems) -> tuple[tuple[str, str], ...]:
    env = item.get("env")
    if env is None:
        return ()
    if not isinstance(env, dict):
        problems.add(_line(item, "env"), f"{where}.env", f"expected a mapping, got {_type_name(env)}",
                     "write `env: {NAME: value}`")
        return ()
    out = []
    for key, value in env.items():
        line = _line(env, key)
        if not isinstance(key, str) or not ENV_KEY_RE.match(key):
            problems.add(line, f"{where}.env.{key}", "not a valid environment variable name",
                         "use letters, digits and _ , not starting with a digit")
        elif key in PLAN_OWNED_ENV:
            problems.add(line, f"{where}.env.{key}", "is set by the plan",
                         "remove it; use `network:` (interface, strategy, base_port) instead")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool) or "\0" in str(value):
            problems.add(line, f"{where}.env.{key}", f"expected a string value, got {_type_name(value)}",
                         "quote the value")
        else:
            out.append((key, str(value)))
    return tuple(out)


def _limits(item: dict, where: str, problems: _Problems) -> Limits:
    limits = item.get("limits")
    if limits is None:
        return Limits()
    if not isinstance(limits, dict):
        problems.add(_line(item, "limits"), f"{where}.limits", "expected a mapping",
                     "write `limits: {memory: 256m, pids: 256}`")
        return Limits()
    _unknown_keys(limits, LIMIT_KEYS, f"{where}.limits.", problems)
    memory = limits.get("memory")
    if memory is not None and not (isinstance(memory, str) and MEMORY_RE.match(memory)):
        problems.add(_line(limits, "memory"), f"{where}.limits.memory", f"{memory!r} is not a memory size",
                     "write a size like 256m or 1g")
        memory = None
    pids = None
    if "pids" in limits:
        pids = _int(limits, "pids", f"{where}.limits.pids", 256, 16, 65536, problems, "use 16 to 65536")
    return Limits(memory=memory, pids=pids)


def _pvs(item: dict, where: str, prefix: str, problems: _Problems) -> list[PVSpec]:
    pvs = item.get("pvs", [])
    if pvs is None:
        pvs = []
    if not isinstance(pvs, list):
        problems.add(_line(item, "pvs"), f"{where}.pvs", f"expected a list, got {_type_name(pvs)}",
                     "write `pvs:` followed by `- name: ...` entries")
        return []
    result, seen = [], set()
    longest_prefix = prefix.replace("{i}", "999") if "{i}" in prefix else prefix
    for index, pv in enumerate(pvs):
        pwhere = f"{where}.pvs[{index}]"
        line = _line(pvs, index)
        if isinstance(pv, str):
            pv = {"name": pv}
        if not isinstance(pv, dict):
            problems.add(line, pwhere, f"expected a mapping, got {_type_name(pv)}", "write `- name: NAME`")
            continue
        spec = _pv(pv, pwhere, line, longest_prefix, problems)
        if spec is None:
            continue
        if spec.name in seen or spec.name in STANDARD_PVS:
            why = "is served by every IOC" if spec.name in STANDARD_PVS else "is declared twice in this IOC"
            problems.add(_line(pv, "name"), f"{pwhere}.name", f"PV {spec.name!r} {why}", "rename or remove it")
        seen.add(spec.name)
        result.append(spec)
    return result


def _pv(pv: dict, where: str, line: int, prefix: str, problems: _Problems) -> PVSpec | None:
    _unknown_keys(pv, PV_KEYS, f"{where}.", problems)
    name = pv.get("name")
    nline = _line(pv, "name") or line
    before = len(problems.lines)
    if not isinstance(name, str) or not name:
        problems.add(nline, f"{where}.name", "missing or empty", "add `name: TEMP` (the part after the prefix)")
        return None
    if not PV_CHARS.match(name):
        problems.add(nline, f"{where}.name", f"{name!r} has characters not allowed in PV names",
                     "use letters, digits and _ - + : [ ] < > ; . only (no spaces, quotes, $ or parentheses)")
    elif len(prefix) + len(name) > PV_NAME_MAX:
        problems.add(nline, f"{where}.name", f"full name {prefix + name!r} has {len(prefix) + len(name)} characters",
                     f"keep prefix + name within {PV_NAME_MAX} characters (EPICS PVNAME_STRINGSZ)")
    ptype = pv.get("type", "float")
    if ptype not in PV_TYPES:
        problems.add(_line(pv, "type"), f"{where}.type", f"unknown type {ptype!r}", f"use one of: {', '.join(PV_TYPES)}")
        ptype = "float"
    count = _int(pv, "count", f"{where}.count", 1, 1, MAX_COUNT, problems, f"use a count from 1 to {MAX_COUNT}")
    if count > 1 and ptype in ("str", "enum"):
        problems.add(_line(pv, "count"), f"{where}.count", f"arrays of {ptype} are not supported",
                     "use count 1, or type float/int for arrays")
    sim = pv.get("sim")
    if sim is not None and sim not in SIMULATIONS:
        problems.add(_line(pv, "sim"), f"{where}.sim", f"unknown simulation {sim!r}", f"use one of: {', '.join(SIMULATIONS)}")
        sim = None
    if sim is not None and ptype in ("str", "enum"):
        problems.add(_line(pv, "sim"), f"{where}.sim", f"cannot simulate a {ptype} PV",
                     "remove `sim`, or make the PV float/int")
    rate = pv.get("rate_hz", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE_HZ:
        problems.add(_line(pv, "rate_hz"), f"{where}.rate_hz", f"{rate!r} is not a rate in (0, {MAX_RATE_HZ:g}] Hz",
                     "use a number such as 1 or 10")
        rate = 1.0
    enum_strings = _enum_strings(pv, where, ptype, problems)
    value = _value(pv, where, ptype, count, enum_strings, problems)
    writable = pv.get("writable", True)
    if not isinstance(writable, bool):
        problems.add(_line(pv, "writable"), f"{where}.writable", "expected true or false", "write `writable: false`")
        writable = True
    if len(problems.lines) > before:
        return None
    return PVSpec(name=name, type=ptype, value=value, count=count, sim=sim, rate_hz=float(rate),
                  enum_strings=enum_strings, writable=writable)


def _enum_strings(pv: dict, where: str, ptype: str, problems: _Problems) -> tuple[str, ...]:
    strings = pv.get("enum_strings")
    line = _line(pv, "enum_strings") or _line(pv, "type")
    if ptype != "enum":
        if strings is not None:
            problems.add(line, f"{where}.enum_strings", "only enum PVs have enum strings", "remove it or set `type: enum`")
        return ()
    if not strings:
        problems.add(line, f"{where}.enum_strings", "an enum PV needs its strings",
                     "add `enum_strings: [Off, On]`")
        return ()
    if (not isinstance(strings, list) or len(strings) > ENUM_MAX_STRINGS
            or not all(isinstance(s, str) and 0 < len(s) <= ENUM_STRING_MAX for s in strings)):
        problems.add(line, f"{where}.enum_strings", "expected a list of 1 to 16 strings of at most 25 characters",
                     "write `enum_strings: [Off, On]`")
        return ()
    return tuple(strings)


def _value(pv: dict, where: str, ptype: str, count: int, enum_strings: tuple[str, ...], problems: _Problems):
    value = pv.get("value")
    if value is None:
        return None
    line = _line(pv, "value")
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and (count == 1 or len(value) > count):
        problems.add(line, f"{where}.value", f"a list of {len(value)} values for count {count}",
                     "give one value, or a list no longer than `count`")
        return None
    ok = {
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str) and len(v.encode()) <= STRING_VALUE_MAX,
        "enum": lambda v: (isinstance(v, str) and v in enum_strings)
        or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(enum_strings)),
    }[ptype]
    if not all(ok(v) for v in items):
        hint = {
            "float": "a number",
            "int": "an integer",
            "str": f"a string of at most {STRING_VALUE_MAX} bytes",
            "enum": "one of the enum strings or its index",
        }[ptype]
        problems.add(line, f"{where}.value", f"{value!r} does not fit type {ptype}", f"use {hint}")
        return None
    return list(value) if isinstance(value, list) else value
