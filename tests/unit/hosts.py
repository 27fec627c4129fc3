"""Made-up hosts for pure tests (no I/O)."""

from orchestrator.hostmodel import HostSnapshot, Interface, IPv4, PortHolder

LO = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
ETH = Interface("eth1", True, False, True, True, 1500, (IPv4.from_cidr("198.51.100.7/24"),))
P2P = Interface("tun0", True, False, False, False, 1400, (IPv4("10.8.0.2", "255.255.255.255", 32, None),))
DOWN = Interface("eth2", False, False, True, True, 1500, (IPv4.from_cidr("203.0.113.5/24"),))


def host(*extra, default="eth1", holders=()) -> HostSnapshot:
    return HostSnapshot((LO, ETH, *extra), default, tuple(holders))


def udp_holder(port=5064, reuse_ok=False, pid=4242, uid=0, address="0.0.0.0") -> PortHolder:
    return PortHolder("udp", port, address, pid, "squatter", uid, None, reuse_ok)


def tcp_holder(port=5064, pid=4343) -> PortHolder:
    return PortHolder("tcp", port, "0.0.0.0", pid, "listener", 0, None, None)
