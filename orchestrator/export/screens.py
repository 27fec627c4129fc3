"""What the operator screens of a fleet show, independent of the display tool: rows of PVs with a widget kind.

Pure. `fleet_screens(plans)` returns one `IocScreen` per IOC (its declared PVs, the old standard PVs it
still serves, its iocStats PVs) and the health PVs of the index screen; `bob.py` (Phoebus) and
`pydm.py` (PyDM) turn them into files. Widget kinds:

- `readback`: a value the IOC owns (simulated, `writable: false`, iocStats): a text update
- `entry`: a writable scalar (float, int, str): a text entry
- `choice`: a writable enum: a combo box with the PV's states
- `plot`: an array (count > 1): a plot of the waveform
- `text`: a char waveform read as a string (iocStats EPICS_VERSION, APP_DIR, ST_SCRIPT)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from orchestrator.plan.model import Plan, PlannedIOC
from orchestrator.spec import iocstats as stats

HEALTH_COLUMNS = (("HEARTBEAT", "heartbeat"), ("UPTIME", "uptime"), ("IOC_CPU_LOAD", "CPU %"),
                  ("MEM_USED", "memory"), ("CA_CLNT_CNT", "clients"))


@dataclass(frozen=True)
class Row:
    """One PV on a screen: its full name, the label shown, the widget kind, and units if any."""

    pv: str
    label: str
    widget: str  # readback | entry | choice | plot | text
    units: str = ""
    group: str = "PVs"  # "PVs" (declared), "standard", "iocStats"


@dataclass(frozen=True)
class IocScreen:
    """The screen of one IOC and the row it gets on the index."""

    ioc: str
    runtime: str
    prefix: str
    iocstats: str | None
    file_stem: str
    rows: tuple[Row, ...]
    health: tuple[tuple[str, str], ...]  # (column title, PV) for the index row

    def pvs(self) -> list[str]:
        return [r.pv for r in self.rows]


def fleet_screens(plans: Mapping[str, Plan]) -> list[IocScreen]:
    """One screen per IOC of every host's plan, in plan order; file stems unique and file-system safe."""
    screens, stems = [], set()
    for plan in plans.values():
        for ioc in plan.iocs:
            stem = _stem(ioc.name, stems)
            stems.add(stem)
            screens.append(IocScreen(ioc.name, ioc.runtime, ioc.prefix, ioc.iocstats, stem, tuple(rows_of(ioc)),
                                     tuple(health_of(ioc))))
    return screens


def rows_of(ioc: PlannedIOC) -> list[Row]:
    """Every PV the IOC serves, each with the widget that suits its type."""
    rows = [Row(ioc.prefix + pv.name, pv.name, _declared_widget(pv)) for pv in ioc.pvs]
    iocstats_names = set(stats.names(ioc.iocstats, ioc.runtime)) if ioc.builtin else set()
    for name in stats.legacy_names(ioc.prefix, ioc.iocstats) if ioc.builtin else ():  # iocfleet's programs only
        if name not in iocstats_names:
            rows.append(Row(name, name[len(ioc.prefix):], "readback", "s" if name.endswith("UPTIME") else "",
                            "standard"))
    if ioc.iocstats:
        served = stats.served(ioc.runtime) if ioc.builtin else tuple(
            stats.BY_SUFFIX[s] for s in stats.HEALTH_PVS)
        for pv in served:
            widget = {"CHAR": "text", "ENUM": "choice"}.get(pv.ca_type, "readback")
            rows.append(Row(f"{ioc.iocstats}:{pv.suffix}", pv.suffix, widget, pv.units, "iocStats"))
    return rows


def health_of(ioc: PlannedIOC) -> list[tuple[str, str]]:
    """The index row's PVs: iocStats health PVs, or the old HEARTBEAT/UPTIME of iocfleet's own programs
    without iocStats; none for an image or a user PVGroup that serves neither."""
    if ioc.iocstats:
        return [(title, f"{ioc.iocstats}:{suffix}") for suffix, title in HEALTH_COLUMNS]
    if not ioc.builtin:
        return []
    return [("heartbeat", ioc.prefix + "HEARTBEAT"), ("uptime", ioc.prefix + "UPTIME")]


def _declared_widget(pv) -> str:
    if pv.count > 1:
        return "plot"
    if not pv.writable or pv.sim:
        return "readback"
    return "choice" if pv.type == "enum" else "entry"


def _stem(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "ioc"
    if stem.lower() in ("index",) or stem in taken:
        stem = f"ioc_{stem}"
    while stem in taken:
        stem += "_"
    return stem
