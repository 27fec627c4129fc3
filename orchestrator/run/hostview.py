"""The host-wide view: every fleet on this host (docker labels and process state) and the CA servers of none.

I/O at the edge: lists containers (sparsely, tolerating ones that vanish mid-listing) and process state
files, asks the kernel who holds CA ports, and searches this fleet's PV names live on loopback. The
judgement is pure: `plan/neighbours.py` (cross-fleet findings) and `fleets_summary` (what `ls` shows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan import neighbours as nb
from orchestrator.plan.model import Finding, Plan
from orchestrator.run.instance import Member
from orchestrator.run.members import members

PROBE_TIMEOUT = 0.4


def family(pid: int | None) -> tuple[int, ...]:
    """A pid with its children (an IOC under docker-init or a supervisor) and its parent (not init)."""
    from orchestrator import host

    if not pid:
        return ()
    return tuple(sorted(p for p in host.process_family(pid, with_parent=True) if p > 1 or p == pid))


def neighbours_of(found: list[Member]) -> tuple[nb.Neighbour, ...]:
    """Group running IOC instances into fleets with their printed client list, pids and PV names."""
    by_fleet: dict[tuple[str, str], list[Member]] = {}
    for m in found:
        if m.role == "ioc" and m.state in ("running", "restarting"):
            by_fleet.setdefault((m.fleet, m.backend), []).append(m)
    out = []
    for (fleet, backend), iocs in sorted(by_fleet.items()):
        env = iocs[0].env
        port = int(env.get("EPICS_CA_SERVER_PORT", "5064")) if env.get("EPICS_CA_SERVER_PORT", "").isdigit() else 5064
        addr_list = nb.parse_addr_list(env.get("EPICS_CA_ADDR_LIST", ""), port)
        neighbour_iocs = []
        for m in iocs:
            try:
                payload = json.loads(m.env.get("IOCFLEET_IOC", "{}"))
            except ValueError:
                payload = {}
            pvs = nb.neighbour_pvs(payload) if payload else ()
            port = m.env.get("EPICS_CAS_SERVER_PORT", "")
            neighbour_iocs.append(nb.NeighbourIOC(m.name, m.runtime, family(m.pid), pvs,
                                                  int(port) if str(port).isdigit() else None))
        out.append(nb.Neighbour(fleet, backend, addr_list, tuple(neighbour_iocs)))
    return tuple(out)


def live_answers(names: tuple[str, ...], ports: set[int]) -> tuple[nb.Answer, ...]:
    """Search `names` on loopback (127.255.255.255 and 127.0.0.1, each port) and name who answered.

    Only loopback: a live check must never put CA traffic on a real network.
    """
    from orchestrator.ca import probe

    destinations = [(a, p) for p in sorted(ports) for a in ("127.255.255.255", "127.0.0.1")]
    destinations = destinations[:probe.MAX_DESTINATIONS]
    if not names or not destinations:
        return ()
    replies = []
    for i in range(0, len(names), probe.MAX_NAMES):
        result = probe.search(names[i:i + probe.MAX_NAMES], destinations, rounds=1, timeout=PROBE_TIMEOUT)
        replies += result.replies
    listeners = _tcp_listeners({r.tcp_port for r in replies})
    seen, out = set(), []
    for r in replies:
        key = (r.name, r.server)
        if key in seen:
            continue
        seen.add(key)
        pid, process = listeners.get(r.tcp_port, (None, None))
        out.append(nb.Answer(r.name, r.server, pid, process))
    return tuple(out)


def _tcp_listeners(ports: set[int]) -> dict[int, tuple[int | None, str | None]]:
    from orchestrator import host

    return host.tcp_listeners(ports)


def neighbour_findings(plan: Plan, snapshot: HostSnapshot, own_pids: frozenset[int] = frozenset(),
                       environ=None) -> list[Finding]:
    """Cross-fleet findings for `plan` on this host right now (the I/O half of `plan/neighbours.py`)."""
    found = members(environ)
    own = set(own_pids)
    for m in found:
        if m.fleet == plan.fleet:
            own.update(family(m.pid))
    others = tuple(n for n in neighbours_of(found) if n.fleet != plan.fleet)
    ports = {i.udp_port for i in plan.iocs}
    held = any(h.proto == "udp" and h.port in ports and h.pid not in own for h in snapshot.ca_ports)
    names = tuple(dict.fromkeys(pv for ioc in plan.iocs for pv in ioc.pv_names))
    answers = live_answers(names, ports) if held and all(1 <= p <= 65535 for p in ports) else ()
    return nb.check(plan, snapshot, others, answers, frozenset(own))


# -- `iocfleet ls` ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetRow:
    """One fleet on this host as `ls` shows it."""

    fleet: str
    backend: str
    strategy: str
    interface: str | None
    udp_ports: tuple[int, ...]
    client_addr_list: str
    iocs: int
    states: dict
    ioc_names: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"fleet": self.fleet, "backend": self.backend, "strategy": self.strategy,
                "interface": self.interface, "udp_ports": list(self.udp_ports),
                "client_addr_list": self.client_addr_list, "iocs": self.iocs, "states": dict(self.states),
                "ioc_names": list(self.ioc_names)}


@dataclass(frozen=True)
class ForeignServer:
    """A CA port holder that belongs to no fleet."""

    proto: str
    address: str
    port: int
    pid: int | None
    uid: int | None
    process: str | None
    container: str | None

    def to_dict(self) -> dict:
        return {"proto": self.proto, "address": self.address, "port": self.port, "pid": self.pid,
                "uid": self.uid, "process": self.process, "container": self.container}


@dataclass(frozen=True)
class HostView:
    """Every fleet on this host, the CA servers of no fleet, and who provides the CA repeater."""

    fleets: tuple[FleetRow, ...]
    foreign: tuple[ForeignServer, ...]
    repeater: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"fleets": [f.to_dict() for f in self.fleets], "foreign": [f.to_dict() for f in self.foreign],
                "repeater": dict(self.repeater)}


def strategy_of(env: dict, count: int) -> str:
    """The strategy a fleet was planned with, read back from one IOC's environment."""
    addr = env.get("EPICS_CA_ADDR_LIST", "").split()
    if len(addr) > 1 or any(":" in a for a in addr):
        return "distinct-ports"
    binds = env.get("EPICS_CAS_INTF_ADDR_LIST", "").split()
    if "0.0.0.0" in binds or len(binds) > 1 or count > 1:
        return "shared-port"
    return "single"


def interface_of(env: dict, snapshot: HostSnapshot) -> str | None:
    for address in env.get("EPICS_CAS_INTF_ADDR_LIST", "").split() + env.get("EPICS_CA_ADDR_LIST", "").split():
        iface = snapshot.interface_of(address.partition(":")[0])
        if iface is not None:
            return iface.name
    return None


def fleets_summary(found: list[Member], snapshot: HostSnapshot) -> tuple[FleetRow, ...]:
    """Pure: `ls` rows from the members (repeaters are not IOCs)."""
    by_fleet: dict[tuple[str, str], list[Member]] = {}
    for m in found:
        if m.role == "ioc" and m.fleet:
            by_fleet.setdefault((m.fleet, m.backend), []).append(m)
    rows = []
    for (fleet, backend), iocs in sorted(by_fleet.items()):
        env = next((m.env for m in iocs if m.env), {})
        states: dict[str, int] = {}
        for m in iocs:
            states[m.state] = states.get(m.state, 0) + 1
        ports = tuple(sorted({int(m.env["EPICS_CAS_SERVER_PORT"]) for m in iocs
                              if str(m.env.get("EPICS_CAS_SERVER_PORT", "")).isdigit()}))
        rows.append(FleetRow(fleet, backend, strategy_of(env, len(iocs)), interface_of(env, snapshot), ports,
                             env.get("EPICS_CA_ADDR_LIST", ""), len(iocs), states,
                             tuple(sorted(m.name for m in iocs))))
    return tuple(rows)


def foreign_servers(found: list[Member], snapshot: HostSnapshot) -> tuple[ForeignServer, ...]:
    """Holders of CA ports that are no fleet's IOC or repeater."""
    ours: set[int] = set()
    containers = {m.container for m in found if m.container}
    for m in found:
        ours.update(family(m.pid))
    out = []
    for h in snapshot.ca_ports:
        if h.pid in ours or (h.container and any(c and c.startswith(h.container[:12]) for c in containers)):
            continue
        out.append(ForeignServer(h.proto, h.address, h.port, h.pid, h.uid, h.process, h.container))
    return tuple(out)


def host_view(environ=None, extra_ports=()) -> HostView:
    """`iocfleet ls`: every fleet on this host, the CA servers of no fleet, and the repeater's provider."""
    from orchestrator import host

    found = members(environ)
    ports = set(extra_ports)
    for m in found:
        if str(m.env.get("EPICS_CAS_SERVER_PORT", "")).isdigit():
            ports.add(int(m.env["EPICS_CAS_SERVER_PORT"]))
    snapshot = host.snapshot(extra_ports=sorted(ports))
    return HostView(fleets_summary(found, snapshot), foreign_servers(found, snapshot),
                    repeater_provider(found, snapshot, environ))


def repeater_provider(found: list[Member], snapshot: HostSnapshot, environ=None) -> dict:
    """Who holds UDP 5065: iocfleet's host repeater (and which fleet started it), a fleet's own, or a foreign one."""
    from orchestrator.hostmodel import CA_REPEATER_PORT

    from orchestrator.run.repeater import HOST_FLEET, read_record

    holders = [h for h in snapshot.holders("udp", CA_REPEATER_PORT)]
    info = {"port": CA_REPEATER_PORT, "held": bool(holders), "provider": None, "pid": None, "process": None,
            "backend": None, "started_by": None}
    if not holders:
        return info
    h = holders[0]
    info.update(pid=h.pid, process=h.process)
    for m in found:
        if m.role != "repeater":
            continue
        if h.pid in family(m.pid) or (m.container and h.container and m.container == h.container):
            record = read_record(environ) or {} if m.fleet == HOST_FLEET else {}
            info.update(provider="iocfleet", backend=m.backend,
                        started_by=record.get("started_by") if m.fleet == HOST_FLEET else m.fleet)
            return info
    info["provider"] = "foreign"
    return info
