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
    """Plan an already validated fleet on this host (or on `snapshot`).

    A multi-host fleet is planned for this machine only: IOCs of hosts declared with an `address` run
    elsewhere, so they are left out (a `remote-iocs` info finding names them) — `up` never starts another
    host's IOCs here (issue 13, class 8). `iocfleet export k8s` plans every host.
    """
    fleet, remote = _this_machine(fleet)
    if snapshot is None:
        from orchestrator import host

        count = sum(i.replicas for i in fleet.iocs)
        base = fleet.network.base_port
        snapshot = host.snapshot(extra_ports=range(base, min(base + count + 1, 65536)), as_uid=ioc_uid)
    result = planner.plan(fleet, snapshot, strategy=strategy, interface=interface, ioc_uid=ioc_uid)
    findings = tuple(conflicts.check(result, snapshot, own_pids))
    if remote:
        findings += (Finding("remote-iocs", "info",
                             f"{sum(len(i) for i in remote.values())} IOC(s) of the fleet run on other hosts "
                             f"({', '.join(remote)}) and are not planned here",
                             "run iocfleet on those hosts, or export every host with `iocfleet export k8s`",
                             "R16", tuple(i.name for iocs in remote.values() for i in iocs)),)
    return PlannedFleet(fleet, snapshot, result, findings)


def _this_machine(fleet: spec.FleetSpec):
    """The fleet with only this machine's IOCs, and the other hosts' IOCs by host name."""
    import dataclasses

    from orchestrator.errors import UsageError
    from orchestrator.plan import multihost

    if not any(h.address for h in fleet.hosts):
        return fleet, {}
    groups = multihost.host_groups(fleet)
    remote = {name: iocs for name, (host, iocs) in groups.items() if host is not None and host.address}
    local = [iocs for name, (host, iocs) in groups.items() if host is None or not host.address]
    if not local:
        raise UsageError(f"every IOC of fleet {fleet.name!r} runs on another host ({', '.join(remote)})",
                         f"{fleet.source}:hosts",
                         "run iocfleet on those hosts, or export them with `iocfleet export k8s`")
    return dataclasses.replace(fleet, iocs=local[0]), remote
