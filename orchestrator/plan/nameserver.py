"""The `name-server` strategy (R15): IOCs share one port, and one unicast address answers for all of them.

Pure. A unicast search to a shared port reaches one IOC (R3), so routed clients, which cannot broadcast
to the IOC host, used to need one `host:port` entry per IOC (distinct-ports). With a name server the
IOCs keep their shared-port binds and clients search one address: the fleet's name server, which
answers every fleet PV with the owning IOC's address and TCP port. libca clients use it over TCP
(`EPICS_CA_NAME_SERVERS`), caproto's client over UDP (an `EPICS_CA_ADDR_LIST` entry); both honour the
SearchResponse ip field, which the name server sets to the IOC's interface address.

The name server learns each IOC's TCP port by searching the fleet's broadcast address itself (every IOC
hears it there, R4), so it runs on the IOC host and needs a broadcast-capable interface (or loopback).
One name server per fleet (not per host): its names file, port and lifetime follow the fleet's
`up`/`down`, and two fleets never depend on each other's process. This module plans it and checks it;
`ioc_images/common/iocfleet_ioc/nameserver.py` is the program.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.hostmodel import CA_REPEATER_PORT, HostSnapshot
from orchestrator.plan.model import Finding

STRATEGY = "name-server"
AUTO_MIN_IOCS = 5  # `auto` picks the name server for routed clients from this many IOCs on
PORT_OFFSET = 2  # base_port + 2 (5066 by default): next to the IOCs' port, past the repeater's 5065
BIND = "0.0.0.0"
INSTANCE = "ca-nameserver"  # the instance name of a fleet's name server (never an IOC name)
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class NameServerPlan:
    """Where the fleet's name server listens, where it discovers IOCs, and which IOC owns which name."""

    address: str  # the address clients reach it at (the interface address)
    port: int  # TCP and UDP
    bind: str
    search: tuple[tuple[str, int], ...]  # where every IOC hears the name server's own searches
    iocs: tuple[tuple[str, str, tuple[str, ...]], ...]  # (ioc name, address clients connect to, PV names)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def names_file(self, fleet: str) -> dict:
        """The names file the program reads (re-read on change: `up` rewrites it)."""
        return {"fleet": fleet, "port": self.port, "search": [list(s) for s in self.search],
                "iocs": {name: {"address": address, "pvs": list(pvs)} for name, address, pvs in self.iocs}}

    def to_dict(self) -> dict:
        return {"address": self.address, "port": self.port, "bind": self.bind, "endpoint": self.endpoint,
                "search": [f"{h}:{p}" for h, p in self.search], "instance": INSTANCE,
                "names": sum(len(pvs) for _, _, pvs in self.iocs)}


def port_for(base_port: int) -> int:
    port = base_port + PORT_OFFSET
    return port + 1 if port == CA_REPEATER_PORT else port


def auto_applies(count: int, clients: str, loopback: bool, has_broadcast: bool) -> bool:
    """`strategy: auto` takes the name server for routed clients of more than a few IOCs on an
    interface it can discover them on (a broadcast address, or loopback)."""
    return clients == "routed" and count >= AUTO_MIN_IOCS and (loopback or has_broadcast)


def plan(base_port: int, address: str | None, broadcast: str | None, loopback: bool,
         iocs, say) -> NameServerPlan:
    """The name server of a fleet whose IOCs (PlannedIOC) share `base_port` on one interface."""
    host = address or "127.0.0.1"
    discover = "127.255.255.255" if loopback or broadcast is None else broadcast
    port = port_for(base_port)
    ns = NameServerPlan(host, port, BIND, ((discover, base_port),),
                        tuple((i.name, host, i.pv_names) for i in iocs))
    say("R15", f"Name server on {host}:{port} (TCP and UDP): it answers every PV of the fleet with the owning "
               "IOC's address and TCP port, so one unicast address reaches every IOC on the shared port; it "
               "learns the IOCs' TCP ports by searching "
               f"{discover}:{base_port} itself (every IOC hears that, R4) and is silent for other names.")
    say("R15", f"Clients: EPICS_CA_NAME_SERVERS={ns.endpoint} (libca, searches over TCP) and "
               f"EPICS_CA_ADDR_LIST={ns.endpoint} (UDP, for clients such as caproto's that have no name-server "
               "support); EPICS_CA_AUTO_ADDR_LIST=NO. Both honour the ip field of the answer.")
    if not loopback and broadcast:
        say("R15", f"Side effect: the name server's own searches go to {broadcast}, so they leave this host "
                   "on the subnet (only for names not cached: first use, and after an IOC restarts).")
    return ns


def client_env(ns: NameServerPlan) -> tuple[tuple[str, str], ...]:
    return (("EPICS_CA_AUTO_ADDR_LIST", "NO"), ("EPICS_CA_ADDR_LIST", ns.endpoint),
            ("EPICS_CA_NAME_SERVERS", ns.endpoint))


def check(plan, snapshot: HostSnapshot, own_pids: frozenset[int] = frozenset()) -> list[Finding]:
    """Findings about a plan's name server: its ports (like IOC ports), and whether it can discover IOCs."""
    ns = getattr(plan, "name_server", None)
    if ns is None:
        return []
    out = []
    iface = snapshot.interface(plan.interface) if plan.interface else None
    if iface is not None and not iface.loopback and not iface.broadcasts():
        out.append(Finding("name-server-no-broadcast", ERROR,
                           f"the name server finds the IOCs by a search to the broadcast of {iface.name}, "
                           "which has none",
                           "use --strategy distinct-ports, or an interface with a broadcast address", "R15",
                           (iface.name,)))
    ioc_ports = {i.udp_port for i in plan.iocs} | {i.tcp_port for i in plan.iocs if i.tcp_port}
    if ns.port in ioc_ports or ns.port == CA_REPEATER_PORT:
        out.append(Finding("name-server-port-clash", ERROR,
                           f"the name server's port {ns.port} is also an IOC's or the repeater's port",
                           "change network.base_port", "R15", (INSTANCE,)))
    for proto in ("tcp", "udp"):
        for holder in snapshot.holders(proto, ns.port):
            if holder.pid in own_pids:
                continue
            out.append(Finding("name-server-port-held", ERROR,
                               f"{proto.upper()} {ns.port}, planned for the name server, is held by pid "
                               f"{holder.pid} ({holder.process or 'unknown'})",
                               "stop that process or change network.base_port (the name server takes base_port+2)",
                               "R15", (str(holder.pid),)))
    users = {i.user or "fleet default" for i in plan.iocs}
    if len(users) > 1:
        out.append(Finding("reuseport-uid-mismatch", ERROR,
                           f"IOCs sharing UDP {plan.iocs[0].udp_port} run as different users",
                           "give every IOC the same `user` (SO_REUSEPORT groups need one uid)", "R2",
                           tuple(i.name for i in plan.iocs)))
    return out
