"""The message and fix of partial reach after `up` (ReachIncomplete): R3 advice only where R3 applies.

A unicast entry in front of a shared port reaches one IOC per client source port (R3): the fix is a
broadcast or distinct ports. A broadcast entry reaches every IOC (R4): a miss there is lost searches (found
with 500 packed IOCs on a loaded host), and the R3 advice would send the operator the wrong way."""

from __future__ import annotations

from hosts import host
from orchestrator import spec
from orchestrator.plan import planner
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.run.lifecycle import reach_fix, reach_text
from orchestrator.run.readiness import PathReach, ReadyReport


def planned_on_lo() -> PlannedFleet:
    fleet = spec.from_dict({"fleet": "rt", "network": {"interface": "lo"},
                            "iocs": [{"name": "a", "prefix": "RT{i}:", "replicas": 20, "pvs": ["X"]}]})
    snap = host()
    return PlannedFleet(fleet, snap, planner.plan(fleet, snap), ())


def report_of(dest) -> ReadyReport:
    iocs = tuple(f"a-{k}" for k in range(1, 21))
    path = PathReach(dest, 0.9, 0.5, tuple(f"RT{k}:X" for k in range(1, 11)), iocs[:12], iocs)
    return ReadyReport((), 1.0, (path,))


def test_a_unicast_entry_gets_the_r3_text_and_fix():
    planned = planned_on_lo()
    report = report_of(("127.0.0.1", 5064))
    assert "(rule R3)" in reach_text(report, planned)
    fix = reach_fix(planned, report)
    assert "(R3)" in fix and "brd +" in fix and "distinct-ports" in fix


def test_a_broadcast_entry_says_searches_were_lost_not_r3():
    planned = planned_on_lo()
    report = report_of(("127.255.255.255", 5064))
    text = reach_text(report, planned)
    assert "R3" not in text and "a broadcast reaches every IOC (R4)" in text
    fix = reach_fix(planned, report)
    assert "R3" not in fix and "overloaded or a firewall" in fix and "doctor --fleet" in fix


def test_long_lists_of_iocs_and_pvs_are_shortened():
    text = reach_text(report_of(("127.0.0.1", 5064)), planned_on_lo())
    assert "a-1, a-2, a-3, a-4, a-5, a-6, a-7, a-8 ... (12 in all)" in text
    assert "... (20 in all)" in text and "RT1:X, RT2:X, RT3:X, RT4:X, RT5:X, RT6:X ... (10 in all)" in text
