"""The delivery model of docs/ca-network-rules.md: which CA server sockets receive a datagram.

Pure (stdlib + hostmodel). It encodes what the Linux kernel does, as measured by
tests/integration/test_rules_truth.py (evidence: docs/rules-evidence.md), in three steps:

1. `server_sockets`: the UDP sockets a runtime opens for an EPICS_CAS_INTF_ADDR_LIST (R6, R10).
2. `bind_outcomes`: which of those bind and which get EADDRINUSE, in start order (R1, R2).
3. `predict`: who receives one datagram (R3-R8), and `reach`: the expected fraction of searches that
   reach each server for a client's address list (R13).

Kernel facts the model relies on (net/ipv4/udp.c), all confirmed by the matrix:
- bind: two sockets on overlapping addresses and one port conflict unless BOTH set SO_REUSEADDR, or
  both set SO_REUSEPORT with the same owner UID. With SO_REUSEADDR on both, any UIDs may share (R2).
- unicast lookup: sockets bound to the exact destination address win over 0.0.0.0 ones (R5); among
  equal candidates the most recently bound socket's SO_REUSEPORT group wins and spreads datagrams over
  its members by a hash of the 4-tuple (R3). A group is: same address, SO_REUSEPORT, same UID (R2).
- broadcast: delivered to every socket bound to 0.0.0.0 or to exactly that broadcast address (R4);
  never to a unicast-address bind (R5). A broadcast-address bind never gets unicast (R6).
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from orchestrator.hostmodel import Interface

ANY = "0.0.0.0"
LIMITED_BROADCAST = "255.255.255.255"
RUNTIMES = ("caproto", "softioc")
LOCAL = "local"


@dataclass(frozen=True)
class Socket:
    """A UDP socket a CA server binds: who owns it, where, and with which sharing options.

    `reuse` is SO_REUSEADDR; `reuseport` is SO_REUSEPORT (None: same as `reuse`). Both runtimes set
    both. `uid` is the socket owner's UID, which decides SO_REUSEPORT group membership (R2).
    """

    owner: str
    runtime: str
    bind: str
    port: int
    reuse: bool = True
    uid: int = 0
    reuseport: bool | None = None
    local: bool = True  # False: no interface of the host has this address, so the bind fails (EADDRNOTAVAIL)

    @property
    def has_reuseport(self) -> bool:
        return self.reuse if self.reuseport is None else self.reuseport

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BindOutcome:
    """Whether one socket bound; if not, the earlier socket it collided with and the rule."""

    socket: Socket
    ok: bool
    conflict_with: str | None = None  # owner of the socket already holding the address
    rule: str | None = None

    def to_dict(self) -> dict:
        return {"socket": self.socket.to_dict(), "ok": self.ok, "conflict_with": self.conflict_with,
                "rule": self.rule}


@dataclass(frozen=True)
class Datagram:
    """A datagram arriving at the host: destination, port, and where the sender sits.

    `sender` is "local" (a client on this host) or the name of the interface whose subnet the
    sender is on (a remote client).
    """

    dst: str
    port: int
    sender: str = LOCAL


@dataclass(frozen=True)
class Prediction:
    """Who receives a datagram.

    kind "all": every receiver gets it (a broadcast, or a single socket); "one-of": exactly one of the
    receivers gets it, chosen per 4-tuple (each with probability `shares`); "none": nobody.
    """

    kind: str
    receivers: tuple[str, ...]
    rules: tuple[str, ...]
    shares: tuple[float, ...] = ()  # per receiver, probability that one datagram reaches it

    def share(self, owner: str) -> float:
        return dict(zip(self.receivers, self.shares)).get(owner, 0.0)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "receivers": list(self.receivers), "rules": list(self.rules),
                "shares": [round(s, 6) for s in self.shares]}


def intf_addresses(intf_addr_list: str | Sequence[str]) -> tuple[str, ...]:
    """EPICS_CAS_INTF_ADDR_LIST as addresses: ports stripped (both runtimes ignore them), default 0.0.0.0."""
    items = intf_addr_list.split() if isinstance(intf_addr_list, str) else list(intf_addr_list)
    out = tuple(dict.fromkeys(a.partition(":")[0] for a in items if a.strip()))
    return out or (ANY,)


def _rsrv_companion(address: str, interfaces: Iterable[Interface]) -> str | None:
    """The address of the second UDP socket rsrv opens next to one bound to `address` (R10).

    rsrv asks osiSockDiscoverBroadcastAddresses for the interface owning `address` and binds what it
    answers: the broadcast address when one is configured, else what getifaddrs reports in its place,
    which is the address itself (loopback, or an address added without `brd`). So for 127.0.0.1, or
    an IP without a broadcast, rsrv holds TWO sockets on the same address and port, both in the
    SO_REUSEPORT group: next to one caproto IOC it gets 2/3 of unicast, not 1/2 (measured).
    No companion for an address no interface owns (a broadcast address, 0.0.0.0).
    """
    for iface in interfaces:
        for a in iface.ipv4:
            if a.address == address:
                if a.peer and not a.broadcast:  # point-to-point: getifaddrs reports the peer there
                    return a.peer
                return a.broadcast if a.broadcast and not iface.loopback else address
    return None


def server_sockets(
    runtime: str,
    intf_addr_list: str | Sequence[str],
    port: int,
    owner: str,
    uid: int = 0,
    interfaces: Iterable[Interface] = (),
) -> tuple[Socket, ...]:
    """The UDP sockets a server of `runtime` binds for its EPICS_CAS_INTF_ADDR_LIST (R6, R10).

    caproto binds exactly the listed addresses. rsrv (softioc) binds each listed address and, for an
    interface's unicast IP, a second socket (see `_rsrv_companion`): on the interface's broadcast
    address, or on the same address again where the interface has none. Sockets, not addresses, are
    what the kernel spreads unicast over, so a duplicate address is kept.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    interfaces = tuple(interfaces)
    binds: list[str] = []
    for addr in intf_addresses(intf_addr_list):
        if addr in binds:  # already bound as an earlier address's broadcast companion
            continue
        binds.append(addr)
        if runtime == "softioc" and addr != ANY:
            companion = _rsrv_companion(addr, interfaces)
            if companion and companion not in binds:
                binds.append(companion)
            elif companion == addr:
                binds.append(addr)
    # rsrv's companion on a point-to-point address is the peer's address, which is not this host's: that
    # bind fails ("CAS: UDP Socket bcast bind ERROR") and the IOC never finishes iocInit (measured).
    peers = {a.peer for i in interfaces for a in i.ipv4 if a.peer} - {a.address for i in interfaces for a in i.ipv4}
    return tuple(Socket(owner, runtime, b, port, True, uid, local=b not in peers) for b in binds)


def tcp_listen_addresses(runtime: str, intf_addr_list: str | Sequence[str]) -> tuple[str, ...]:
    """Where the server's TCP listeners bind: both runtimes use the same addresses as UDP (no broadcast
    extra for rsrv). A listener on a broadcast address accepts nothing (R6)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    return intf_addresses(intf_addr_list)


def _overlap(a: str, b: str) -> bool:
    return a == b or a == ANY or b == ANY


def bind_outcomes(sockets: Sequence[Socket]) -> tuple[BindOutcome, ...]:
    """Which sockets bind, in start order (R1, R2).

    A socket fails with EADDRINUSE if an earlier bound socket on the same port and an overlapping
    address (equal, or either 0.0.0.0) exists and not both set SO_REUSEADDR, unless both set
    SO_REUSEPORT with the same UID. Different UIDs with SO_REUSEADDR on both still bind (R2: no error, no sharing).
    """
    bound: list[Socket] = []
    out: list[BindOutcome] = []
    for s in sockets:
        if not s.local:
            out.append(BindOutcome(s, False, None, "R10"))
            continue
        clash = None
        for b in bound:
            if b.port != s.port or not _overlap(b.bind, s.bind):
                continue
            if b.reuse and s.reuse:
                continue
            if b.has_reuseport and s.has_reuseport and b.uid == s.uid:
                continue
            clash = b
            break
        if clash is None:
            bound.append(s)
            out.append(BindOutcome(s, True))
        else:
            rule = "R2" if clash.has_reuseport and s.has_reuseport else "R1"
            out.append(BindOutcome(s, False, clash.owner, rule))
    return tuple(out)


def live_sockets(sockets: Sequence[Socket]) -> tuple[Socket, ...]:
    """The sockets that serve: a server any of whose UDP binds failed does not start (both runtimes)."""
    outcomes = bind_outcomes(sockets)
    dead = {o.socket.owner for o in outcomes if not o.ok}
    return tuple(o.socket for o in outcomes if o.ok and o.socket.owner not in dead)


def _is_loopback(addr: str) -> bool:
    return ipaddress.IPv4Address(addr).is_loopback


def classify(dst: str, sender: str, interfaces: Sequence[Interface]) -> str:
    """How the host sees `dst` from `sender`: "broadcast", "unicast" or "elsewhere" (not this host)."""
    if sender == LOCAL:
        if dst == LIMITED_BROADCAST or any(dst in i.routed_broadcasts() for i in interfaces):
            return "broadcast"
        if _is_loopback(dst) or any(dst in i.addresses() for i in interfaces):
            return "unicast"
        return "elsewhere"
    iface = next((i for i in interfaces if i.name == sender), None)
    if iface is None or not iface.up or _is_loopback(dst):
        return "elsewhere"  # a remote client's 127.x is its own host (R7)
    if dst == LIMITED_BROADCAST or dst in iface.routed_broadcasts():
        return "broadcast"
    if any(dst in i.addresses() for i in interfaces if not i.loopback):
        return "unicast"
    return "elsewhere"


def _groups(candidates: Sequence[Socket]) -> list[list[Socket]]:
    """SO_REUSEPORT groups in bind order: same address, SO_REUSEPORT, same UID (R2)."""
    groups: list[list[Socket]] = []
    for s in candidates:
        home = next((g for g in groups if s.has_reuseport and g[0].has_reuseport
                     and g[0].bind == s.bind and g[0].uid == s.uid), None)
        if home is None:
            groups.append([s])
        else:
            home.append(s)
    return groups


def _shares(members: Sequence[Socket]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    owners = tuple(dict.fromkeys(s.owner for s in members))
    return owners, tuple(sum(s.owner == o for s in members) / len(members) for o in owners)


def predict(sockets: Sequence[Socket], datagram: Datagram, interfaces: Sequence[Interface]) -> Prediction:
    """Who receives `datagram`, given the sockets servers tried to bind (in start order)."""
    interfaces = tuple(interfaces)
    on_port = [s for s in live_sockets(sockets) if s.port == datagram.port]
    how = classify(datagram.dst, datagram.sender, interfaces)
    rules: list[str] = []
    if datagram.dst.startswith("127."):
        rules.append("R7")
    if how == "elsewhere":
        return Prediction("none", (), tuple(rules) or ("R13",))
    if how == "broadcast":
        members = [s for s in on_port if s.bind in (ANY, datagram.dst)]
        if any(s.bind not in (ANY, datagram.dst) for s in on_port):
            rules.append("R5")
        if datagram.sender == LOCAL:
            rules.append("R8")
        owners = tuple(dict.fromkeys(s.owner for s in members))
        if not owners:
            return Prediction("none", (), ("R4", *rules))
        return Prediction("all", owners, ("R4", *rules), tuple(1.0 for _ in owners))
    exact = [s for s in on_port if s.bind == datagram.dst]
    if any(s.bind not in (ANY, datagram.dst) and _is_broadcast_bind(s.bind, interfaces) for s in on_port):
        rules.append("R6")
    if exact and any(s.bind == ANY for s in on_port):
        rules.append("R5")
    candidates = exact or [s for s in on_port if s.bind == ANY]
    if not candidates:
        return Prediction("none", (), tuple(rules) or ("R5",))
    groups = _groups(candidates)
    newest = candidates[-1]
    winner = next(g for g in groups if newest in g)
    if len(groups) > 1:
        rules.append("R2" if len({g[0].uid for g in groups}) > 1 else "R1")
    owners, shares = _shares(winner)
    if len(owners) == 1:  # one server, however many of its sockets are in the group
        return Prediction("all", owners, tuple(rules) or ("R3",), shares)
    return Prediction("one-of", owners, ("R3", *rules), shares)


def _is_broadcast_bind(addr: str, interfaces: Sequence[Interface]) -> bool:
    return addr == LIMITED_BROADCAST or any(addr in i.routed_broadcasts() for i in interfaces)


def reach(
    addr_list: Sequence[tuple[str, int]],
    sockets: Sequence[Socket],
    interfaces: Sequence[Interface],
    sender: str = LOCAL,
) -> dict[str, float]:
    """Expected fraction of a client's searches that reach each server (1.0 broadcast, 1/N unicast group).

    A search goes to every entry of the client's address list (R13); entries are independent, so a
    server is missed only if every entry misses it.
    """
    owners = dict.fromkeys(s.owner for s in sockets)
    miss = {o: 1.0 for o in owners}
    for dst, port in addr_list:
        p = predict(sockets, Datagram(dst, port, sender), interfaces)
        for owner, share in zip(p.receivers, p.shares):
            miss[owner] *= 1.0 - share
    return {o: round(1.0 - m, 12) for o, m in miss.items()}


def reaches_all(
    addr_list: Sequence[tuple[str, int]],
    sockets: Sequence[Socket],
    interfaces: Sequence[Interface],
    sender: str = LOCAL,
) -> bool:
    """True if every search from this client reaches every server that is running."""
    live = {s.owner for s in live_sockets(sockets)}
    shares = reach(addr_list, sockets, interfaces, sender)
    return all(shares.get(o, 0.0) == 1.0 for o in live)


def reply_source(bind: str, client_ip: str, interfaces: Sequence[Interface]) -> str:
    """The source IP of a server's reply sent from a socket bound to `bind` (a search response with
    ip 255.255.255.255 tells the client to connect there).

    A unicast bind sends from that address. A 0.0.0.0 or broadcast bind lets the kernel choose: the
    client's own address if it is local, 127.0.0.1 for loopback, else the address of the interface
    on the client's subnet.
    """
    if bind != ANY and not _is_broadcast_bind(bind, interfaces):
        return bind
    if _is_loopback(client_ip) or any(client_ip in i.addresses() for i in interfaces):
        return client_ip  # a local destination: the kernel answers from the address it was sent to
    for iface in interfaces:
        for a in iface.ipv4:
            if not iface.loopback and ipaddress.IPv4Address(client_ip) in a.network():
                return a.address
    return ANY


def answers_per_search(runtime: str, udp_sockets: int) -> int:
    """How many replies one server sends to one search it receives (R14: the same IOC may answer twice).

    caproto answers from every UDP socket it bound (so "IP + broadcast" answers twice, same TCP
    port); rsrv answers once.
    """
    return max(1, udp_sockets) if runtime == "caproto" else 1


def tcp_connect_ok(listen_addresses: Iterable[str], server_ip: str) -> bool:
    """Whether a TCP connect to `server_ip` reaches a listener bound to one of `listen_addresses` (R6)."""
    return any(a in (ANY, server_ip) for a in listen_addresses)
