"""Direct tests of issue-13 fixes that are not a CLI input (the corpus covers those)."""

from __future__ import annotations

import socket

import pytest

from orchestrator.ca import probe
from orchestrator.run.readiness import locate


def _free_udp_ports(count: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_readiness_searches_more_destinations_than_one_probe_holds():
    # A distinct-ports fleet of 40 IOCs has 40 address-list entries: `up` used to stop with "probe too
    # large" after starting them all (class 5). One real caproto-style answer comes from the 40th.
    ports = _free_udp_ports(probe.MAX_DESTINATIONS + 8)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    destinations = [("127.0.0.1", p) for p in ports] + [server.getsockname()]
    import threading

    import caproto as ca

    def answer():
        server.settimeout(5)
        try:
            data, addr = server.recvfrom(65536)
        except OSError:
            return
        commands = ca.Broadcaster(our_role=ca.SERVER).recv(data, addr)
        for cmd in commands:
            if isinstance(cmd, ca.SearchRequest):
                reply = ca.SearchResponse(4321, None, cmd.cid, ca.DEFAULT_PROTOCOL_VERSION)
                server.sendto(bytes(ca.VersionResponse(ca.DEFAULT_PROTOCOL_VERSION)) + bytes(reply), addr)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        found = locate(["HOSTILE:X"], destinations, 1.0)
    finally:
        thread.join()
        server.close()
    assert [names for names in found.values()] == [["HOSTILE:X"]]
    assert next(iter(found))[1] == 4321


def test_readiness_skips_names_no_client_can_search():
    assert locate(["N" * 60], [("127.0.0.1", _free_udp_ports(1)[0])], 0.05) == {}


@pytest.mark.parametrize("name, ok", [("N" * 59, True), ("N" * 60, False), ("N" * 59 + ".VAL", True), ("", False),
                                      ("A B", False), ("PV:é", False), ("PV:\n", False)])
def test_name_problem_matches_caprotos_client(name, ok):
    assert (probe.name_problem(name) is None) is ok


def test_isolating_a_fleet_never_makes_a_name_longer_than_clients_search():
    from orchestrator.errors import UsageError
    from orchestrator.run.fleet import isolated
    from orchestrator.spec import from_dict

    fleet = from_dict({"fleet": "iso", "iocs": [{"name": "a", "prefix": "P:", "pvs": [{"name": "N" * 57}]}]})
    assert isolated(fleet, None) is fleet
    with pytest.raises(UsageError, match="longer than 59"):
        isolated(fleet, "gw0")
