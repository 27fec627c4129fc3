"""Plain data describing a host's network: interfaces, addresses and who holds CA ports.

These types are pure (no I/O, no third-party imports) so the planner, the rules model and the
conflict checks can be tested with generated hosts. `host.py` fills them from the running system.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field

CA_SERVER_PORT = 5064
CA_REPEATER_PORT = 5065


@dataclass(frozen=True)
class IPv4:
    """One IPv4 address of an interface."""

    address: str
    netmask: str
    prefixlen: int
    broadcast: str | None  # IFA_BROADCAST: None when the address was added without `brd`
    peer: str | None = None  # the other end of a point-to-point address (`ip addr add A peer B`)
    secondary: bool = False  # a further address in the subnet of an earlier one
    label: str | None = None  # the address label (eth0:1), when the kernel has one

    @classmethod
    def from_cidr(cls, cidr: str, broadcast: bool = True) -> "IPv4":
        iface = ipaddress.IPv4Interface(cidr)
        net = iface.network
        bcast = str(net.broadcast_address) if broadcast and net.prefixlen < 31 else None
        return cls(str(iface.ip), str(net.netmask), net.prefixlen, bcast)

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)


@dataclass(frozen=True)
class Interface:
    """A network interface as the kernel reports it."""

    name: str
    up: bool
    loopback: bool
    broadcast_capable: bool
    multicast: bool
    mtu: int
    ipv4: tuple[IPv4, ...] = ()
    point_to_point: bool = False

    def broadcasts(self) -> tuple[str, ...]:
        """Broadcast addresses this interface can be reached at (loopback: its /8's top address)."""
        out = []
        for a in self.ipv4:
            if a.broadcast:
                out.append(a.broadcast)
            elif self.loopback:
                out.append(str(a.network().broadcast_address))
        return tuple(out)

    def routed_broadcasts(self) -> tuple[str, ...]:
        """Addresses the kernel delivers as broadcast here: besides every configured broadcast, the top
        address of the subnet of each address shorter than /31, which the kernel puts in its local table
        (`broadcast A.B.C.255`) with or without `brd` (measured, docs/rules.md R4)."""
        out = list(self.broadcasts())
        for a in self.ipv4:
            if a.prefixlen < 31 and a.peer is None:
                top = str(a.network().broadcast_address)
                if top not in out:
                    out.append(top)
        return tuple(out)

    def addresses(self) -> tuple[str, ...]:
        return tuple(a.address for a in self.ipv4)


@dataclass(frozen=True)
class PortHolder:
    """A socket bound to a CA port: which process holds it and whether it lets others share the port."""

    proto: str  # "udp" | "tcp"
    port: int
    address: str
    pid: int | None
    process: str | None
    uid: int | None
    container: str | None
    reuse_ok: bool | None  # None: not tested (e.g. TCP listener)


@dataclass(frozen=True)
class ProcessInfo:
    """What the system tells about one process: its command line, user, start time, EPICS_* variables."""

    pid: int
    name: str
    cmdline: tuple[str, ...]
    uid: int | None
    started: float  # creation time (seconds since the epoch)
    epics_environ: tuple[tuple[str, str], ...] | None  # its EPICS_* variables, sorted; None: unreadable


@dataclass(frozen=True)
class HostSnapshot:
    """Everything the planner needs to know about the host, gathered once."""

    interfaces: tuple[Interface, ...]
    default_interface: str | None
    ca_ports: tuple[PortHolder, ...] = field(default=())

    def interface(self, name: str) -> Interface | None:
        return next((i for i in self.interfaces if i.name == name), None)

    def interface_of(self, address: str) -> Interface | None:
        """The interface that owns `address`, or whose subnet broadcast `address` is."""
        for iface in self.interfaces:
            if address in iface.addresses() or address in iface.broadcasts():
                return iface
        return None

    def holders(self, proto: str, port: int) -> tuple[PortHolder, ...]:
        return tuple(h for h in self.ca_ports if h.proto == proto and h.port == port)

    def to_dict(self) -> dict:
        return asdict(self)


def loopback_only_snapshot() -> HostSnapshot:
    """A host with only `lo`: the safe default for examples and tests."""
    lo = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
    return HostSnapshot((lo,), None, ())
