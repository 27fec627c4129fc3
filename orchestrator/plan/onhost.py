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
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset()) -> PlannedFleet:
    """Load `path`, snapshot the host (CA ports plus every port the fleet may use), plan and check."""
    fleet = spec.load(path)
    return plan_spec(fleet, strategy, interface, ioc_uid, own_pids)


def plan_spec(fleet: spec.FleetSpec, strategy: str | None = None, interface: str | None = None,
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset(),
              snapshot: HostSnapshot | None = None) -> PlannedFleet:
    """Plan an already validated fleet on this host (or on `snapshot`)."""
    if snapshot is None:
        from orchestrator import host

        count = sum(i.replicas for i in fleet.iocs)
        base = fleet.network.base_port
        snapshot = host.snapshot(extra_ports=range(base, min(base + count + 3, 65536)), as_uid=ioc_uid)
    result = planner.plan(fleet, snapshot, strategy=strategy, interface=interface, ioc_uid=ioc_uid)
    findings = tuple(conflicts.check(result, snapshot, own_pids))
    if result.fanout is not None:  # network.fanout needs nft and CAP_NET_ADMIN here (R17)
        from orchestrator.run.fanout import preflight

        findings = tuple(sorted((*findings, *preflight(result.fanout)), key=lambda f: f.severity != "error"))
    return PlannedFleet(fleet, snapshot, result, findings)
