"""iocStats: the per-IOC health PVs of devIocStats' `ioc.template`, their names, types and the IOC name.

Every built-in IOC serves them under `NAME:` (`iocs[].iocstats`, default: the prefix without its trailing
`:`, so prefix `BL1:MTR:` gives `BL1:MTR:HEARTBEAT`, `BL1:MTR:UPTIME`, ...). softioc loads the template
pythonSoftIOC ships (`softioc.devIocStats`); caproto serves the same names with the same Channel Access
types (ioc_images/common/iocfleet_ioc/iocstats.py, kept equal to this table by a unit test and compared
with softioc's over CA by an integration test).

Before iocStats every IOC served `PREFIX:HEARTBEAT` (an integer counter) and `PREFIX:UPTIME` (seconds as
a float). Those names keep answering: where they are also iocStats names (the default), the iocStats
record serves them (HEARTBEAT still counts once a second; UPTIME is devIocStats' string
`[N days, ]HH:MM:SS`); where they are not (an explicit `iocstats:` name), the old PVs stay as they were.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEGACY_PVS = ("HEARTBEAT", "UPTIME")  # the standard PVs every IOC served before iocStats
READY_PVS = ("HEARTBEAT", "UPTIME")  # readiness waits for these iocStats PVs (and the declared ones)
HEALTH_PVS = ("HEARTBEAT", "UPTIME", "IOC_CPU_LOAD", "MEM_USED", "CA_CLNT_CNT", "FD_CNT")  # displays, status
LIVENESS_PV = "UPTIME"  # Docker healthcheck and Kubernetes liveness probe read this one
SUFFIX_MAX = len("SCANONCE_Q_USEDPER")  # the longest iocStats record suffix
NAME_MAX = 59 - 1 - SUFFIX_MAX  # so NAME:SUFFIX stays within the 59 characters every client can search
_NAME = re.compile(r"^[A-Za-z0-9_\-:\[\]<>;.]+$")


@dataclass(frozen=True)
class StatPV:
    """One record of devIocStats' ioc.template: suffix, record type, CA field type, units, array length."""

    suffix: str
    record: str
    ca_type: str  # DBF as a client sees it: DOUBLE, STRING, ENUM, CHAR
    units: str = ""
    count: int = 1

    @property
    def kind(self) -> str:
        """The fleet-file PV type a display or reader treats it as (float, str, enum, text)."""
        return {"DOUBLE": "float", "STRING": "str", "ENUM": "enum", "CHAR": "text"}[self.ca_type]


def _d(suffix, record="ai", units=""):
    return StatPV(suffix, record, "DOUBLE", units)


def _s(suffix):
    return StatPV(suffix, "stringin", "STRING")


def _w(suffix, count):
    return StatPV(suffix, "waveform", "CHAR", count=count)


# ioc.template of pythonSoftIOC 4.7 (softioc/iocStats/iocAdmin/Db), without its iocQueue.db includes
STATS: tuple[StatPV, ...] = (
    StatPV("ACCESS", "mbbo", "ENUM"), _s("STARTTOD"), _s("TOD"), _d("HEARTBEAT", "calcout"),
    _d("START_CNT", "calcout"), _d("READACF", "sub"), _d("SYSRESET", "sub"),
    _d("CA_CLNT_CNT"), _d("CA_CONN_CNT"), _d("RECORD_CNT"), _d("FD_MAX"), _d("FD_CNT"), _d("FD_FREE", "calc"),
    _d("SYS_CPU_LOAD", units="%"), _d("IOC_CPU_LOAD", units="%"), _d("CPU_CNT"), _d("SUSP_TASK_CNT"),
    _d("MEM_USED", units="byte"), _d("MEM_FREE", units="byte"), _d("MEM_MAX", units="byte"),
    _d("CA_UPD_TIME", "ao", "sec"), _d("FD_UPD_TIME", "ao", "sec"), _d("LOAD_UPD_TIME", "ao", "sec"),
    _d("MEM_UPD_TIME", "ao", "sec"), _s("ST_SCRIPT1"), _s("ST_SCRIPT2"), _w("ST_SCRIPT", 120),
    _s("KERNEL_VERS"), _s("EPICS_VERS"), _w("EPICS_VERSION", 120), _s("HOSTNAME"), _s("APP_DIR1"),
    _s("APP_DIR2"), _w("APP_DIR", 160), _s("UPTIME"), _s("ENGINEER"), _s("LOCATION"), _d("PROCESS_ID"),
    _d("PARENT_ID"), _d("SCANONCE_Q_SIZE"), _d("CB_Q_SIZE"),
)
# iocQueue.db, included four times: EPICS base's scan-once and callback queues (softioc only; caproto has none)
QUEUE_STATS: tuple[StatPV, ...] = tuple(
    pv for q in ("SCANONCE", "CBLOW", "CBMEDIUM", "CBHIGH") for pv in (
        _d(f"{q}_Q_HIGH"), _d(f"{q}_Q_HIGHPER", "calc"), _d(f"{q}_Q_USED"), _d(f"{q}_Q_USEDPER", "calc"),
        _d(f"{q}_Q_OVERRUNS")))
BY_SUFFIX = {pv.suffix: pv for pv in STATS + QUEUE_STATS}


def default_name(prefix: str) -> str:
    """The iocStats IOC name derived from a PV prefix: the prefix without trailing `:`."""
    return prefix.rstrip(":") or prefix


def served(runtime: str) -> tuple[StatPV, ...]:
    """The iocStats records an IOC of `runtime` serves."""
    return STATS + QUEUE_STATS if runtime == "softioc" else STATS


def names(iocstats: str | None, runtime: str) -> tuple[str, ...]:
    """Every iocStats PV name of one IOC (none without an iocStats name)."""
    if not iocstats:
        return ()
    return tuple(f"{iocstats}:{pv.suffix}" for pv in served(runtime))


def legacy_names(prefix: str, iocstats: str | None) -> tuple[str, ...]:
    """The pre-iocStats PREFIX+HEARTBEAT/UPTIME names still served as before (not taken by iocStats)."""
    taken = {f"{iocstats}:{s}" for s in LEGACY_PVS} if iocstats else set()
    return tuple(prefix + s for s in LEGACY_PVS if prefix + s not in taken)


def name_problem(name: object) -> str | None:
    """Why `name` cannot be an iocStats IOC name, or None."""
    if not isinstance(name, str) or not name:
        return "expected a non-empty string"
    plain = name.replace("{i}", "")
    if not _NAME.match(plain):
        return f"{name!r} has characters not allowed in PV names"
    if name.endswith(":"):
        return f"{name!r} ends with `:`; iocStats adds `:` itself (NAME:HEARTBEAT)"
    if len(plain.replace("{i}", "999")) > NAME_MAX:
        return f"{name!r} is longer than {NAME_MAX} characters (NAME:{'SCANONCE_Q_USEDPER'} must fit in 59)"
    return None
