"""Plan a fleet file on this host: read the file, inspect the host, plan, check. The one I/O step before pure work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from orchestrator import host
from orchestrator.plan import conflicts, packing
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.hostmodel import HostSnapshot
from orchestrator.findings import Finding, by_severity, has_errors, raise_for_errors
from orchestrator.plan.model import Plan

Neighbours = Callable[[Plan, HostSnapshot, frozenset[int]], list[Finding]]


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
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset(),
              neighbours: Neighbours | None = None, pack: bool | None = None) -> PlannedFleet:
    """Load `path`, snapshot the host (CA ports plus every port the fleet may use), plan and check;
    `pack` (True/False) overrides the file's `pack`.

    `neighbours(plan, snapshot, own_pids)`: the cross-fleet findings against the other fleets and CA
    servers on this host (`check` and `up` pass `run.hostview.neighbour_findings`)."""
    fleet = with_pack(spec.load(path), pack)
    return plan_spec(fleet, strategy, interface, ioc_uid, own_pids, neighbours=neighbours)


def with_pack(fleet: spec.FleetSpec, pack: bool | None) -> spec.FleetSpec:
    """`fleet` with `pack` turned on or off (`--pack/--no-pack`); None keeps the file's choice."""
    import dataclasses

    return fleet if pack is None else dataclasses.replace(fleet, pack=pack)


def plan_spec(fleet: spec.FleetSpec, strategy: str | None = None, interface: str | None = None,
              ioc_uid: int | None = None, own_pids: frozenset[int] = frozenset(),
              snapshot: HostSnapshot | None = None, neighbours: Neighbours | None = None) -> PlannedFleet:
    """Plan an already validated fleet on this host (or on `snapshot`).

    A multi-host fleet is planned for this machine only: IOCs of hosts declared with an `address` run
    elsewhere, so they are left out (a `remote-iocs` info finding names them) — `up` never starts another
    host's IOCs here (issue 13, class 8). `iocfleet export k8s` plans every host.
    """
    fleet, remote = _this_machine(fleet)
    if snapshot is None:
        snapshot = inspect_host(fleet, ioc_uid)
    result = planner.plan(fleet, snapshot, strategy=strategy, interface=interface, ioc_uid=ioc_uid)
    findings = conflicts.check(result, snapshot, own_pids)
    findings = list(findings) + packing.findings(result.packing)
    if result.fanout is not None:  # network.fanout needs nft and CAP_NET_ADMIN here (R17)
        findings = list(findings) + fanout_preflight(result.fanout)
    if remote:
        findings = list(findings) + [Finding(
            "remote-iocs", "info", f"{sum(len(i) for i in remote.values())} IOC(s) of the fleet run on other "
            f"hosts ({', '.join(remote)}) and are not planned here",
            "run iocfleet on those hosts, or export every host with `iocfleet export k8s`", "R16",
            tuple(i.name for iocs in remote.values() for i in iocs))]
    if neighbours is not None:
        findings = _with_neighbours(findings, neighbours(result, snapshot, own_pids))
    return PlannedFleet(fleet, snapshot, result, tuple(by_severity(findings)))


def _with_neighbours(findings: list[Finding], extra: list[Finding]) -> list[Finding]:
    """Add the cross-fleet findings; a uid warning about a holder they name as an error goes."""
    named = {s for f in extra if f.code == "port-uid-group" for s in f.subjects}
    kept = [f for f in findings if not (f.code == "reuseport-uid-mismatch" and f.severity != "error"
                                        and set(f.subjects) <= named)]
    # cross-fleet errors first: a refusal's one line then names the fleet this one would break
    return list(by_severity(list(extra) + kept))


def fanout_preflight(fan) -> list[Finding]:
    """network.fanout: dnat needs the `nft` command, CAP_NET_ADMIN and nf_tables on this host (R17)."""
    if fan is None:
        return []
    problem = host.nftables_problem()
    if problem is None:
        return []
    what, fix = problem
    return [Finding("fanout-unavailable", "error", f"network.fanout: dnat cannot work here: {what}",
                    f"{fix}, or drop network.fanout", "R17")]


def fleet_ports(fleet: spec.FleetSpec) -> range:
    """The ports a fleet may take on this host: its base port and one more per IOC (distinct-ports skips
    the repeater's 5065), and the name server's (base + 2, R15)."""
    base = fleet.network.base_port
    return range(base, min(base + sum(i.replicas for i in fleet.iocs) + 3, 65536))


def inspect_host(fleet: spec.FleetSpec, ioc_uid: int | None = None) -> HostSnapshot:
    """This host right now, with the holders of the CA ports and of every port the fleet may take."""
    return host.snapshot(extra_ports=fleet_ports(fleet), as_uid=ioc_uid)


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
