"""The IOC contract: the JSON the planner writes into IOCFLEET_IOC, parsed into frozen dataclasses.

Every problem is collected and reported at once, each naming the PV and field it is about, so a bad
plan fails with one readable message instead of one fix-and-retry round per mistake.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

TYPES = ("float", "int", "str", "enum")
SIMS = ("sine", "ramp", "noise", "counter")
STANDARD_PVS = ("HEARTBEAT", "UPTIME")

# Limits of Channel Access and of EPICS base records (softioc): a DBR_STRING holds 40 bytes with its
# terminator, an mbb record 16 states of 26 bytes, a record name 60 characters.
MAX_STRING = 39
MAX_ENUM_STATES = 16
MAX_ENUM_STRING = 25
MAX_NAME = 59  # caproto's client refuses to search longer names (measured; orchestrator.spec.pvs.PV_NAME_MAX)
MAX_COUNT = 4_000_000
MAX_RATE_HZ = 100.0
INT32 = (-(2**31), 2**31 - 1)

_NAME_CHARS = re.compile(r"^[A-Za-z0-9_:.;\-\[\]<>{}]+$")
_IOC_KEYS = {"name", "prefix", "pvs", "iocstats"}
_PV_KEYS = {"name", "type", "value", "count", "sim", "rate_hz", "enum_strings", "writable"}


class IocSpecError(ValueError):
    """The IOC description is unusable; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class PvSpec:
    """One PV as the IOC serves it: `value` is normalised (a tuple for arrays, an index for enums)."""

    name: str
    type: str
    value: Any
    count: int = 1
    sim: str | None = None
    rate_hz: float = 1.0
    enum_strings: tuple[str, ...] = ()
    puts: bool = True  # the fleet file's `writable` (false: read-only for clients)

    @property
    def writable(self) -> bool:
        """Clients may put to every PV except simulated ones (the IOC owns their value) and those the
        fleet file declares `writable: false`."""
        return self.sim is None and self.puts

    @property
    def is_array(self) -> bool:
        return self.count > 1

    def nbytes(self) -> int:
        """The payload size of one full read of this PV over CA."""
        per = {"float": 8, "int": 4, "str": 40, "enum": 2}[self.type]
        return per * self.count


@dataclass(frozen=True)
class IocSpec:
    name: str
    prefix: str
    pvs: tuple[PvSpec, ...]
    iocstats: str | None = None  # the iocStats IOC name: NAME:HEARTBEAT, NAME:UPTIME, ... (iocstats.py)

    def full_name(self, pv_name: str) -> str:
        return self.prefix + pv_name

    def legacy_pvs(self) -> tuple[str, ...]:
        """The standard PVs (short names) served as before iocStats: those iocStats does not take over."""
        taken = {f"{self.iocstats}:{s}" for s in STANDARD_PVS} if self.iocstats else set()
        return tuple(s for s in STANDARD_PVS if self.full_name(s) not in taken)

    def pv_names(self) -> list[str]:
        """Every PV name the IOC serves, standard PVs included (iocStats: the ones every runtime serves)."""
        from .iocstats import STATS

        stats = [f"{self.iocstats}:{row[0]}" for row in STATS] if self.iocstats else []
        return [self.full_name(p.name) for p in self.pvs] + [self.full_name(s) for s in self.legacy_pvs()] + stats

    def max_array_bytes(self) -> int:
        """The EPICS_CA_MAX_ARRAY_BYTES a server and its clients need for the largest PV."""
        return max([16384] + [p.nbytes() + 64 for p in self.pvs])


def parse_ioc(text: str) -> IocSpec:
    """Parse the JSON text of one IOC; raise IocSpecError naming every problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IocSpecError([f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return ioc_from_dict(data)


def load_ioc(environ: Mapping[str, str]) -> IocSpec:
    """Read the IOC from IOCFLEET_IOC (JSON text) or IOCFLEET_IOC_FILE (a path to it)."""
    text = environ.get("IOCFLEET_IOC")
    if text is None or not text.strip():
        path = environ.get("IOCFLEET_IOC_FILE")
        if not path:
            raise IocSpecError(["neither IOCFLEET_IOC nor IOCFLEET_IOC_FILE is set"])
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise IocSpecError([f"IOCFLEET_IOC_FILE={path}: {exc.strerror}"]) from None
    return parse_ioc(text)


def ioc_from_dict(data: Any) -> IocSpec:
    """Validate an already-decoded IOC mapping."""
    if not isinstance(data, dict):
        raise IocSpecError([f"the IOC must be a JSON object, got {type(data).__name__}"])
    problems: list[str] = []
    for key in sorted(set(data) - _IOC_KEYS):
        problems.append(f"unknown key {key!r} (known: {', '.join(sorted(_IOC_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append("name: must be a non-empty string")
    prefix = data.get("prefix", "")
    if not isinstance(prefix, str) or (prefix and not _NAME_CHARS.match(prefix)):
        problems.append(f"prefix: {prefix!r} must be a string of PV name characters")
        prefix = ""
    raw_pvs = data.get("pvs", [])
    if not isinstance(raw_pvs, list):
        problems.append("pvs: must be a list")
        raw_pvs = []
    pvs: list[PvSpec] = []
    seen: set[str] = set(STANDARD_PVS)
    for index, raw in enumerate(raw_pvs):
        pv = _pv_from_dict(raw, f"pvs[{index}]", problems)
        if pv is None:
            continue
        where = f"pvs[{index}] ({pv.name})"
        if pv.name in seen:
            reason = "is served by every IOC" if pv.name in STANDARD_PVS else "is declared twice"
            problems.append(f"{where}: name {reason}")
        elif len(prefix + pv.name) > MAX_NAME:
            problems.append(f"{where}: full name {prefix + pv.name!r} is longer than {MAX_NAME} characters")
        seen.add(pv.name)
        pvs.append(pv)
    iocstats = data.get("iocstats")
    if iocstats is not None and (not isinstance(iocstats, str) or not _NAME_CHARS.match(iocstats)
                                 or len(iocstats) > MAX_NAME - 19):
        problems.append(f"iocstats: {iocstats!r} must be a string of PV name characters, at most {MAX_NAME - 19} long")
    if problems:
        raise IocSpecError(problems)
    return IocSpec(name=name, prefix=prefix, pvs=tuple(pvs), iocstats=iocstats)


def _pv_from_dict(raw: Any, where: str, problems: list[str]) -> PvSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object")
        return None
    before = len(problems)
    for key in sorted(set(raw) - _PV_KEYS):
        problems.append(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_PV_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not _NAME_CHARS.match(name):
        problems.append(f"{where}: name {name!r} must be a non-empty string of PV name characters")
        return None
    where = f"{where} ({name})"
    kind = raw.get("type")
    if kind not in TYPES:
        problems.append(f"{where}: type {kind!r} must be one of {', '.join(TYPES)}")
        return None
    count = raw.get("count", 1)
    if count is None:
        count = 1
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        problems.append(f"{where}: count {count!r} must be an integer from 1 to {MAX_COUNT}")
        count = 1
    elif count > 1 and kind not in ("float", "int"):
        problems.append(f"{where}: count > 1 (an array) is supported for float and int only")
    sim = raw.get("sim")
    if sim is not None and sim not in SIMS:
        problems.append(f"{where}: sim {sim!r} must be null or one of {', '.join(SIMS)}")
    elif (kind == "str" and sim is not None) or (kind == "enum" and sim not in (None, "counter")):
        problems.append(f"{where}: sim {sim!r} is not available for type {kind} (enum takes counter only)")
    rate = raw.get("rate_hz", 1.0)
    if rate is None:
        rate = 1.0
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE_HZ:
        problems.append(f"{where}: rate_hz {rate!r} must be a number above 0 and at most {MAX_RATE_HZ:g}")
        rate = 1.0
    strings = raw.get("enum_strings") or []
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        problems.append(f"{where}: enum_strings must be a list of strings")
        strings = []
    if kind == "enum":
        if not 1 <= len(strings) <= MAX_ENUM_STATES:
            problems.append(f"{where}: an enum needs 1 to {MAX_ENUM_STATES} enum_strings, got {len(strings)}")
        for s in strings:
            if len(s.encode("latin-1", "replace")) > MAX_ENUM_STRING:
                problems.append(f"{where}: enum string {s!r} is longer than {MAX_ENUM_STRING} characters")
    elif strings:
        problems.append(f"{where}: enum_strings is only for type enum")
    value = _initial_value(kind, raw.get("value"), count, tuple(strings), where, problems)
    puts = raw.get("writable", True)
    if not isinstance(puts, bool):
        problems.append(f"{where}: writable {puts!r} must be true or false")
    if len(problems) > before:
        return None
    return PvSpec(name=name, type=kind, value=value, count=count, sim=sim, rate_hz=float(rate),
                  enum_strings=tuple(strings), puts=puts)


def _initial_value(kind: str, value: Any, count: int, strings: tuple[str, ...], where: str,
                   problems: list[str]) -> Any:
    """Normalise the initial value: arrays become tuples of `count` items, enums an index."""
    if kind == "str":
        if value is None:
            return ""
        if not isinstance(value, str) or len(value.encode("latin-1", "replace")) > MAX_STRING:
            problems.append(f"{where}: value must be a string of at most {MAX_STRING} characters")
        return value
    if kind == "enum":
        if value is None:
            return 0
        if isinstance(value, str) and value in strings:
            return strings.index(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < max(len(strings), 1):
            return value
        problems.append(f"{where}: value {value!r} must be one of enum_strings or an index into them")
        return 0
    if value is None:
        zero = 0 if kind == "int" else 0.0
        return (zero,) * count if count > 1 else zero
    items = value if isinstance(value, list) else [value] * count
    if count > 1 and isinstance(value, list) and len(value) != count:
        problems.append(f"{where}: value has {len(value)} elements, count is {count}")
        return None
    if count == 1 and isinstance(value, list):
        problems.append(f"{where}: value is a list but count is 1")
        return None
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            problems.append(f"{where}: value {item!r} must be a finite number")
            return None
        if kind == "int":
            if item != int(item) or not INT32[0] <= item <= INT32[1]:
                problems.append(f"{where}: value {item!r} must be a 32-bit integer")
                return None
            out.append(int(item))
        else:
            out.append(float(item))
    return tuple(out) if count > 1 else out[0]
