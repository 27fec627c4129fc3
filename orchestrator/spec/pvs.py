"""Validation of the PVs an IOC declares: names, types, values, arrays, simulations, enums."""

from __future__ import annotations

import re

from orchestrator.spec.model import PV_TYPES, SIMULATIONS, STANDARD_PVS, PVSpec
from orchestrator.spec.fields import Problems, check_int, line_of, show, type_name, unknown_keys

# EPICS record and PV names: EPICS base allows 60 characters (PVNAME_STRINGSZ 61 with the NUL), and both
# runtimes serve 60, but caproto's client refuses to search for more than 59 (measured, issue 13 class 2:
# orchestrator.ca.probe.MAX_SEARCH_NAME), so the served name — prefix after replica expansion, plus the
# PV name, HEARTBEAT and UPTIME included — is held to 59. No spaces, quotes or macro characters. EPICS base also accepts `+`, but our IOC images refuse it (iocfleet_ioc/spec.py),
# so a `+` here would pass validation and then crash every IOC at start: refuse it up front.
PV_NAME_MAX = 59
PV_CHARS = re.compile(r"^[A-Za-z0-9_\-:\[\]<>;.]+$")
MAX_COUNT = 1_000_000
MAX_RATE_HZ = 100.0
ENUM_MAX_STRINGS = 16
ENUM_STRING_MAX = 25
STRING_VALUE_MAX = 39
INT32 = (-(2**31), 2**31 - 1)


def _finite(value) -> bool:
    import math

    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a double
        return False


PV_KEYS = ("name", "type", "value", "count", "sim", "rate_hz", "enum_strings", "writable")


def served_prefix(prefix: str, replicas: int) -> str:
    """The longest prefix a replica serves (as plan.planner.expand_replicas makes it)."""
    if replicas == 1:
        return prefix.replace("{i}", "")
    return prefix.replace("{i}", str(replicas)) if "{i}" in prefix else f"{prefix}{replicas}:"


def check_pvs(item: dict, where: str, prefix: str, problems: Problems, replicas: int = 1,
              reserved: tuple[str, ...] = STANDARD_PVS) -> list[PVSpec]:
    """The IOC's declared PVs; `reserved` names (HEARTBEAT, UPTIME of iocfleet's programs) are refused."""
    pvs = item.get("pvs", [])
    if pvs is None:
        pvs = []
    if not isinstance(pvs, list):
        problems.add(line_of(item, "pvs"), f"{where}.pvs", f"expected a list, got {type_name(pvs)}",
                     "write `pvs:` followed by `- name: ...` entries")
        return []
    result, seen = [], set()
    longest_prefix = served_prefix(prefix, replicas)
    standard = max(STANDARD_PVS, key=len)
    if prefix and len(longest_prefix) + len(standard) > PV_NAME_MAX:
        problems.add(line_of(item, "prefix"), f"{where}.prefix",
                     f"served name {show(longest_prefix + standard)} has {len(longest_prefix) + len(standard)} characters",
                     f"shorten the prefix: every IOC serves {standard}, and prefix + name must fit in {PV_NAME_MAX} "
                     "characters (replicas add their number)")
    for index, pv in enumerate(pvs):
        pwhere = f"{where}.pvs[{index}]"
        line = line_of(pvs, index)
        if isinstance(pv, str):
            pv = {"name": pv}
        if not isinstance(pv, dict):
            problems.add(line, pwhere, f"expected a mapping, got {type_name(pv)}", "write `- name: NAME`")
            continue
        spec = _pv(pv, pwhere, line, longest_prefix, problems)
        if spec is None:
            continue
        if spec.name in seen or spec.name in reserved:
            why = "is served by every IOC iocfleet's programs run" if spec.name in reserved else "is declared twice in this IOC"
            problems.add(line_of(pv, "name"), f"{pwhere}.name", f"PV {show(spec.name)} {why}", "rename or remove it")
        seen.add(spec.name)
        result.append(spec)
    return result


def _pv(pv: dict, where: str, line: int, prefix: str, problems: Problems) -> PVSpec | None:
    unknown_keys(pv, PV_KEYS, f"{where}.", problems)
    name = pv.get("name")
    nline = line_of(pv, "name") or line
    before = len(problems.lines)
    if not isinstance(name, str) or not name:
        problems.add(nline, f"{where}.name", "missing or empty", "add `name: TEMP` (the part after the prefix)")
        return None
    if not PV_CHARS.fullmatch(name):
        problems.add(nline, f"{where}.name", f"{show(name)} has characters not allowed in PV names",
                     "use letters, digits and _ - : [ ] < > ; . only (no spaces, quotes, $ or parentheses)")
    elif len(prefix) + len(name) > PV_NAME_MAX:
        problems.add(nline, f"{where}.name", f"served name {show(prefix + name)} has {len(prefix) + len(name)} characters",
                     f"keep prefix + name within {PV_NAME_MAX} characters (CA clients search at most "
                     f"{PV_NAME_MAX}; replicas add their number to the prefix)")
    ptype = pv.get("type", "float")
    if ptype not in PV_TYPES:
        problems.add(line_of(pv, "type"), f"{where}.type", f"unknown type {show(ptype)}", f"use one of: {', '.join(PV_TYPES)}")
        ptype = "float"
    count = check_int(pv, "count", f"{where}.count", 1, 1, MAX_COUNT, problems, f"use a count from 1 to {MAX_COUNT}")
    if count > 1 and ptype in ("str", "enum"):
        problems.add(line_of(pv, "count"), f"{where}.count", f"arrays of {ptype} are not supported",
                     "use count 1, or type float/int for arrays")
    sim = pv.get("sim")
    if sim is not None and sim not in SIMULATIONS:
        problems.add(line_of(pv, "sim"), f"{where}.sim", f"unknown simulation {show(sim)}", f"use one of: {', '.join(SIMULATIONS)}")
        sim = None
    if sim is not None and ptype in ("str", "enum"):
        problems.add(line_of(pv, "sim"), f"{where}.sim", f"cannot simulate a {ptype} PV",
                     "remove `sim`, or make the PV float/int")
    rate = pv.get("rate_hz", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not _finite(rate) or not 0 < rate <= MAX_RATE_HZ:
        problems.add(line_of(pv, "rate_hz"), f"{where}.rate_hz", f"{show(rate)} is not a rate in (0, {MAX_RATE_HZ:g}] Hz",
                     "use a number such as 1 or 10")
        rate = 1.0
    enum_strings = _enum_strings(pv, where, ptype, problems)
    value = _value(pv, where, ptype, count, enum_strings, problems)
    writable = pv.get("writable", True)
    if not isinstance(writable, bool):
        problems.add(line_of(pv, "writable"), f"{where}.writable", "expected true or false", "write `writable: false`")
        writable = True
    if len(problems.lines) > before:
        return None
    return PVSpec(name=name, type=ptype, value=value, count=count, sim=sim, rate_hz=float(rate),
                  enum_strings=enum_strings, writable=writable)


def _enum_strings(pv: dict, where: str, ptype: str, problems: Problems) -> tuple[str, ...]:
    strings = pv.get("enum_strings")
    line = line_of(pv, "enum_strings") or line_of(pv, "type")
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


def _value(pv: dict, where: str, ptype: str, count: int, enum_strings: tuple[str, ...], problems: Problems):
    value = pv.get("value")
    if value is None:
        return None
    line = line_of(pv, "value")
    items = value if isinstance(value, list) else [value]
    # What the IOC programs accept (ioc_images/common/iocfleet_ioc/spec.py), no more: a list has exactly
    # `count` items, numbers are finite, ints fit 32 bits (issue 13, class 6: these passed, then the IOC
    # refused to start and `up` timed out).
    if isinstance(value, list) and (count == 1 or len(value) != count):
        problems.add(line, f"{where}.value", f"a list of {len(value)} values for count {count}",
                     f"give one value (used for every element), or a list of exactly {count} values")
        return None
    ok = {
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and INT32[0] <= v <= INT32[1],
        "str": lambda v: isinstance(v, str) and len(v.encode()) <= STRING_VALUE_MAX,
        "enum": lambda v: (isinstance(v, str) and v in enum_strings)
        or (isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(enum_strings)),
    }[ptype]
    if not all(ok(v) for v in items):
        hint = {
            "float": "a finite number (not .nan or .inf)",
            "int": f"an integer from {INT32[0]} to {INT32[1]} (32 bits)",
            "str": f"a string of at most {STRING_VALUE_MAX} bytes",
            "enum": "one of the enum strings or its index",
        }[ptype]
        problems.add(line, f"{where}.value", f"{show(value)} does not fit type {ptype}", f"use {hint}")
        return None
    return list(value) if isinstance(value, list) else value
