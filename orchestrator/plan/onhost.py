"""Plan a fleet file on this host: read the file, inspect the host, plan, check. The one I/O step before pure work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator import host
from orchestrator.plan import conflicts
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.hostmodel import HostSnapshot
from orchestrator.findings import Finding, has_errors, raise_for_errors
from orchestrator.plan.model import Plan


@dataclass(frozen=True)
class PlannedFleet:
    """A fleet file planned on a host snapshot, with the findings of the check."""

    spec: spec.FleetSpec
    snapshot: HostSnapshot
    plan: Plan
    findings: tuple[Finding, ...]

    @property
    def has_errors(self) -> bool:
        return has_errors(self.findings)

    def to_dict(self) -> dict:
        return self.plan.to_dict(self.findings)

    def raise_for_errors(self) -> None:
        """Raise FindingsError (exit 1) when a finding is an error; call after rendering (`iocfleet check`)."""
        raise_for_errors(self.findings, f"fleet {self.plan.fleet}")


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
        snapshot = inspect_host(fleet, ioc_uid)
    result = planner.plan(fleet, snapshot, strategy=strategy, interface=interface, ioc_uid=ioc_uid)
    findings = tuple(conflicts.check(result, snapshot, own_pids))
    return PlannedFleet(fleet, snapshot, result, findings)


def fleet_ports(fleet: spec.FleetSpec) -> range:
    """The ports a fleet may take on this host: its base port and one more per IOC (distinct-ports skips
    the repeater's 5065), and the name server's (base + 2, R15)."""
    base = fleet.network.base_port
    return range(base, min(base + sum(i.replicas for i in fleet.iocs) + 3, 65536))


def inspect_host(fleet: spec.FleetSpec, ioc_uid: int | None = None) -> HostSnapshot:
    """This host right now, with the holders of the CA ports and of every port the fleet may take."""
    return host.snapshot(extra_ports=fleet_ports(fleet), as_uid=ioc_uid)
