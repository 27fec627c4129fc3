"""Plan a fleet file on this host: read the file, inspect the host, plan, check. The one I/O step before pure work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.plan import conflicts
from orchestrator.plan import planner
from orchestrator.spec import model as spec
from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan.model import Finding, Plan


@dataclass(frozen=True)
class PlannedFleet:
    """A fleet file planned on a host snapshot, with the findings of the check."""

    spec: spec.FleetSpec
    snapshot: HostSnapshot
    plan: Plan
    findings: tuple[Finding, ...]

    @property
    def has_errors(self) -> bool:
        return conflicts.has_errors(self.findings)

    def to_dict(self) -> dict:
        return self.plan.to_dict(self.findings)


def plan_file(path: str | Path, strategy: str | None = None, interface: str | None = None,
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset(),
              neighbours: bool = False) -> PlannedFleet:
    """Load `path`, snapshot the host (CA ports plus every port the fleet may use), plan and check.

    `neighbours`: also check against the other fleets and CA servers on this host (`check`, `up`)."""
    fleet = spec.load(path)
    return plan_spec(fleet, strategy, interface, ioc_uid, own_pids, neighbours=neighbours)


def plan_spec(fleet: spec.FleetSpec, strategy: str | None = None, interface: str | None = None,
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset(),
              snapshot: HostSnapshot | None = None, neighbours: bool = False) -> PlannedFleet:
    """Plan an already validated fleet on this host (or on `snapshot`)."""
    if snapshot is None:
        from orchestrator import host

        count = sum(i.replicas for i in fleet.iocs)
        base = fleet.network.base_port
        snapshot = host.snapshot(extra_ports=range(base, min(base + count + 1, 65536)), as_uid=ioc_uid)
    result = planner.plan(fleet, snapshot, strategy=strategy, interface=interface, ioc_uid=ioc_uid)
    findings = conflicts.check(result, snapshot, own_pids)
    if neighbours:
        findings = _with_neighbours(findings, result, snapshot, own_pids)
    return PlannedFleet(fleet, snapshot, result, tuple(findings))


def _with_neighbours(findings: list[Finding], plan: Plan, snapshot: HostSnapshot,
                     own_pids: frozenset[int]) -> list[Finding]:
    """Add the cross-fleet findings; a uid warning about a holder they name as an error goes."""
    from orchestrator.run.hostview import neighbour_findings

    extra = neighbour_findings(plan, snapshot, own_pids)
    named = {s for f in extra if f.code == "port-uid-group" for s in f.subjects}
    kept = [f for f in findings if not (f.code == "reuseport-uid-mismatch" and f.severity != "error"
                                        and set(f.subjects) <= named)]
    order = {"error": 0, "warning": 1, "info": 2}
    # cross-fleet errors first: a refusal's one line then names the fleet this one would break
    return sorted(extra + kept, key=lambda f: order[f.severity])

