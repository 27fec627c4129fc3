"""Cross-fleet checks: what this fleet would do to the other fleets and CA servers on this host, and they to it.

Pure: `check(plan, snapshot, neighbours, answers, own_pids)` takes the plan, the host snapshot (its UDP
port holders with pid and uid), the other fleets as `run/hostview.py` found them (their IOCs' pids, PV
names and the client address list their IOCs were planned with) and the answers of a live search for
this fleet's PV names; it returns findings (docs/findings.md). The delivery model of `ca/rules.py`
decides whether a fleet's printed settings still reach every one of its IOCs once this fleet's sockets
join the port.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.ca import rules
from orchestrator.hostmodel import HostSnapshot, PortHolder
from orchestrator.plan.conflicts import ERROR, client_entries
from orchestrator.plan.model import Finding, Plan

FULL = 0.999  # reach at or above this counts as "every search"


@dataclass(frozen=True)
class NeighbourIOC:
    """One running IOC of another fleet: its name, the pids of its process family, the PVs it serves."""

    name: str
    runtime: str
    pids: tuple[int, ...] = ()
    pvs: tuple[str, ...] = ()
    udp_port: int | None = None  # None: unknown, counts as sharing every port


@dataclass(frozen=True)
class Neighbour:
    """Another fleet running on this host and the client settings it printed (its IOCs' EPICS_CA_ADDR_LIST)."""

    fleet: str
    backend: str
    addr_list: tuple[tuple[str, int], ...]
    iocs: tuple[NeighbourIOC, ...] = ()
    uid: int | None = None

    def ioc_of(self, pid: int | None) -> NeighbourIOC | None:
        return next((i for i in self.iocs if pid is not None and pid in i.pids), None)


@dataclass(frozen=True)
class Answer:
    """A live search reply for one of this fleet's PV names: the server's TCP address and its pid (if known)."""

    pv: str
    server: tuple[str, int]
    pid: int | None = None
    process: str | None = None


@dataclass(frozen=True)
class Owners:
    """Who a pid belongs to: a neighbour fleet's IOC, or a foreign process."""

    neighbours: tuple[Neighbour, ...]
    holders: tuple[PortHolder, ...] = field(default=())

    def fleet_of(self, pid: int | None) -> tuple[Neighbour, str] | None:
        for n in self.neighbours:
            ioc = n.ioc_of(pid)
            if ioc is not None:
                return n, ioc.name
        return None

    def label(self, pid: int | None, process: str | None = None) -> str:
        found = self.fleet_of(pid)
        if found:
            return f"fleet {found[0].fleet} ({found[0].backend}, IOC {found[1]})"
        if process is None:
            process = next((h.process for h in self.holders if h.pid == pid and h.process), None)
        return f"pid {pid} ({process or 'unknown process'})" if pid else "an unknown process"

    def owner(self, pid: int | None) -> str:
        """The socket owner name used in the delivery model."""
        found = self.fleet_of(pid)
        return f"{found[0].fleet}/{found[1]}" if found else f"pid {pid}"


def check(plan: Plan, snapshot: HostSnapshot, neighbours: tuple[Neighbour, ...] = (),
          answers: tuple[Answer, ...] = (), own_pids: frozenset[int] = frozenset()) -> list[Finding]:
    """Every cross-fleet finding for `plan` joining this host next to `neighbours` (errors only)."""
    others = tuple(n for n in neighbours if n.fleet != plan.fleet)
    owners = Owners(others, snapshot.ca_ports)
    return [*_duplicate_pvs(plan, others, answers, owners, own_pids),
            *_uid_groups(plan, snapshot, owners, own_pids),
            *_printed_settings(plan, snapshot, owners, own_pids)]


def _duplicate_pvs(plan: Plan, neighbours, answers, owners: Owners, own_pids) -> list[Finding]:
    """PVs a search of this fleet's clients would get two answers for (R14): served by a neighbour IOC on one
    of this fleet's UDP ports, or answered live by a server that is not this fleet's."""
    ours = {pv: ioc.name for ioc in plan.iocs for pv in ioc.pv_names}
    ports = {ioc.udp_port for ioc in plan.iocs}
    clashes: dict[str, set[str]] = {}
    for n in neighbours:
        for ioc in n.iocs:
            if ioc.udp_port is not None and ioc.udp_port not in ports:
                continue  # another port: no search of this fleet's clients reaches it
            for pv in set(ioc.pvs) & ours.keys():
                clashes.setdefault(f"fleet {n.fleet} ({n.backend}, IOC {ioc.name})", set()).add(pv)
    for a in answers:
        if a.pv in ours and (a.pid is None or a.pid not in own_pids):
            clashes.setdefault(owners.label(a.pid, a.process), set()).add(a.pv)
    out = []
    for who, pvs in sorted(clashes.items()):
        names = sorted(pvs)
        listing = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(Finding("duplicate-pv", ERROR,
                           f"{len(names)} PV(s) of fleet {plan.fleet} are already served on this host, on UDP "
                           f"{'/'.join(map(str, sorted(ports)))}, by {who}: "
                           f"{listing}",
                           f"give this fleet's IOCs another prefix, or stop {who.split(' (')[0]} first; clients "
                           "connect to whichever server answers first", "R14", (who, *names[:5])))
    return out


def _our_binds(plan: Plan) -> set[tuple[str, int]]:
    return {(address, ioc.udp_port) for ioc in plan.iocs for address in ioc.bind}


def _uid_groups(plan: Plan, snapshot: HostSnapshot, owners: Owners, own_pids) -> list[Finding]:
    """Joining a port whose holders run as another uid: the newest uid group takes all unicast (R2)."""
    if plan.ioc_uid is None:
        return []
    binds = _our_binds(plan)
    by_owner: dict[str, list[PortHolder]] = {}
    for h in snapshot.ca_ports:
        if h.proto != "udp" or (h.address, h.port) not in binds or (h.pid is not None and h.pid in own_pids):
            continue
        if h.uid is not None and h.uid != plan.ioc_uid:
            by_owner.setdefault(owners.label(h.pid, h.process), []).append(h)
    out = []
    for who, held in sorted(by_owner.items()):
        where = ", ".join(sorted({f"{h.address}:{h.port}" for h in held}))
        uid = held[0].uid
        out.append(Finding(
            "port-uid-group", ERROR,
            f"UDP {where} is held by {who} as uid {uid}, and this fleet's IOCs would run as uid {plan.ioc_uid}: "
            f"the kernel groups SO_REUSEPORT sockets by uid, and the group of the most recently bound socket "
            f"takes ALL unicast to the port, its older members included; restarting any IOC there flips all "
            f"unicast to that IOC's uid",
            f"run both as one uid (the same backend, or `user:`), or give this fleet another network.base_port",
            "R2", (who, *sorted({str(h.pid) for h in held if h.pid}))))
    return out


def _model_runtime(runtime: str) -> str:
    return runtime if runtime in rules.RUNTIMES else "softioc"  # `image` IOCs behave like rsrv (EPICS base)


def _printed_settings(plan: Plan, snapshot: HostSnapshot, owners: Owners, own_pids) -> list[Finding]:
    """Whether every fleet's printed address list still reaches all its IOCs once this fleet has joined."""
    ours_ports = {ioc.udp_port for ioc in plan.iocs}
    existing = [rules.Socket(owners.owner(h.pid), "caproto", h.address, h.port, True,
                             h.uid if h.uid is not None else -1)
                for h in snapshot.ca_ports
                if h.proto == "udp" and h.port in ours_ports and not (h.pid is not None and h.pid in own_pids)]
    if not existing:
        return []
    uid = plan.ioc_uid if plan.ioc_uid is not None else 0
    ours = [s for ioc in plan.iocs
            for s in rules.server_sockets(_model_runtime(ioc.runtime), ioc.bind, ioc.udp_port,
                                          f"{plan.fleet}/{ioc.name}", uid, snapshot.interfaces)]
    if plan.ioc_uid is None:  # `check` does not know the backend's uid: assume the holders' own
        ours = [rules.Socket(s.owner, s.runtime, s.bind, s.port, True, existing[0].uid) for s in ours]
    ifaces = snapshot.interfaces
    after = existing + ours
    out = []
    for n in owners.neighbours:
        entries = [e for e in n.addr_list if e[1] in ours_ports]
        if not entries:
            continue
        before = rules.reach(entries, existing, ifaces)
        now = rules.reach(entries, after, ifaces)
        hurt = sorted(o for o in before if o.startswith(f"{n.fleet}/") and before[o] >= FULL and now.get(o, 0) < FULL)
        if hurt:
            listing = " ".join(f"{h}:{p}" for h, p in n.addr_list)
            worst = min(now.get(o, 0.0) for o in hurt)
            out.append(Finding(
                "neighbour-settings-broken", ERROR,
                f"fleet {n.fleet} ({n.backend}) printed EPICS_CA_ADDR_LIST={listing}; with this fleet on the same "
                f"port, a search there would reach {', '.join(o.split('/', 1)[1] for o in hurt)} in only "
                f"{worst:.0%} of searches",
                f"give this fleet another network.base_port, or bring fleet {n.fleet} up again so that it prints "
                "a broadcast (strategy shared-port)", "R3", (f"fleet {n.fleet}", *hurt)))
    own_entries = client_entries(plan)
    mine = rules.reach(own_entries, after, ifaces)
    alone = rules.reach(own_entries, ours, ifaces)
    short = sorted(o for o in alone if alone[o] >= FULL and mine.get(o, 0) < FULL)
    if short:
        others = sorted({s.owner.split("/")[0] for s in existing})
        out.append(Finding(
            "neighbour-unicast", ERROR,
            f"this fleet's printed EPICS_CA_ADDR_LIST={plan.client_env_dict().get('EPICS_CA_ADDR_LIST')} would reach "
            f"{', '.join(o.split('/', 1)[1] for o in short)} in only some searches: the port is shared with "
            f"{', '.join(others)}",
            "use strategy shared-port (clients search the broadcast) or another network.base_port", "R3",
            tuple(short)))
    return out


def neighbour_pvs(ioc_payload: dict) -> tuple[str, ...]:
    """The PV names an IOC serves from its IOCFLEET_IOC payload (declared plus the standard ones)."""
    from orchestrator.spec.model import STANDARD_PVS

    prefix = ioc_payload.get("prefix", "")
    names = [prefix + p["name"] for p in ioc_payload.get("pvs", []) if isinstance(p, dict) and "name" in p]
    return tuple(names) + tuple(prefix + s for s in STANDARD_PVS)


def parse_addr_list(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """EPICS_CA_ADDR_LIST as (host, port) pairs; entries that are not host or host:port are skipped."""
    out = []
    for entry in text.split():
        host, _, port = entry.partition(":")
        if port and not port.isdigit():
            continue
        out.append((host, int(port) if port else default_port))
    return tuple(out)
