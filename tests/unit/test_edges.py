"""Truth at the edges, pure parts: kernel addresses (no brd, /31, /32, peer, secondary), the plan made
from them, and how readiness judges a client-like sweep (fresh vs fixed source port)."""

from __future__ import annotations

import json

from hosts import LO, host
from orchestrator import host as hostio
from orchestrator.ca.sweep import FIXED, FRESH, Sweep, SweepRound
from orchestrator.hostmodel import Interface
from orchestrator.plan import conflicts, planner
from orchestrator.run import readiness
from orchestrator import spec

# `ip -j addr show dev d0` on kernel 6.18 for: 198.18.250.1/24 (no brd), 198.18.251.1/24 brd +,
# 198.18.252.1/31, 198.18.253.1 peer 198.18.253.2 (abridged to the keys the kernel sends)
IP_JSON = json.dumps([{"ifindex": 3, "ifname": "d0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
                       "mtu": 1500, "addr_info": [
                           {"family": "inet", "local": "198.18.250.1", "prefixlen": 24, "label": "d0"},
                           {"family": "inet", "local": "198.18.251.1", "prefixlen": 24,
                            "broadcast": "198.18.251.255", "label": "d0"},
                           {"family": "inet", "local": "198.18.252.1", "prefixlen": 31, "label": "d0"},
                           {"family": "inet", "local": "198.18.253.1", "address": "198.18.253.2",
                            "prefixlen": 32, "label": "d0"},
                           {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]}])


def kernel_iface(*keep: str) -> Interface:
    addrs, flags = hostio.kernel_addresses(IP_JSON)["d0"]
    chosen = tuple(a for a in addrs if not keep or a.address in keep)
    return Interface("d0", True, False, "BROADCAST" in flags, True, 1500, chosen)


def fleet(n=3, **network) -> spec.FleetSpec:
    iocs = [{"name": f"ioc{i}", "prefix": f"E:{i}:", "pvs": [{"name": "X"}]} for i in range(n)]
    return spec.from_dict({"fleet": "e", "network": {"interface": "d0", **network}, "iocs": iocs})


def test_kernel_addresses_give_a_broadcast_only_where_the_kernel_has_one():
    addrs = {a.address: a for a in hostio.kernel_addresses(IP_JSON)["d0"][0]}
    assert list(addrs) == ["198.18.250.1", "198.18.251.1", "198.18.252.1", "198.18.253.1"]  # no inet6
    assert addrs["198.18.250.1"].broadcast is None  # added without brd: no IFA_BROADCAST
    assert addrs["198.18.251.1"].broadcast == "198.18.251.255"
    assert addrs["198.18.252.1"].broadcast is None and addrs["198.18.252.1"].prefixlen == 31
    p2p = addrs["198.18.253.1"]
    assert (p2p.broadcast, p2p.peer, p2p.prefixlen) == (None, "198.18.253.2", 32)


def test_kernel_addresses_is_none_when_ip_output_is_unusable():
    assert hostio.kernel_addresses("not json") is None


def test_netifaces_fallback_does_not_take_the_address_itself_for_a_broadcast():
    # what netifaces says for the same four addresses (measured)
    raw = [{"addr": "198.18.250.1", "netmask": "255.255.255.0", "broadcast": "198.18.250.1"},
           {"addr": "198.18.251.1", "netmask": "255.255.255.0", "broadcast": "198.18.251.255"},
           {"addr": "198.18.252.1", "netmask": "255.255.255.254", "broadcast": "198.18.252.1"},
           {"addr": "198.18.253.1", "netmask": "255.255.255.255", "broadcast": "198.18.253.2"}]
    assert [hostio._ipv4(a).broadcast for a in raw] == [None, "198.18.251.255", None, None]


def test_no_brd_address_plans_distinct_ports_and_explains_why_with_the_brd_fix():
    snap = host(kernel_iface("198.18.250.1"))
    p = planner.plan(fleet(3), snap)
    assert (p.strategy, p.address, p.broadcast) == ("distinct-ports", "198.18.250.1", None)
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.18.250.1:5064 198.18.250.1:5066 198.18.250.1:5067"
    text = " ".join(d.text for d in p.decisions)
    assert "has no broadcast address" in text and "one fixed port" in text
    assert "ip addr add 198.18.250.1/24 brd + dev d0" in text
    assert not conflicts.has_errors(conflicts.check(p, snap))


def test_forced_shared_port_on_a_no_brd_address_is_an_error_naming_brd_plus():
    snap = host(kernel_iface("198.18.250.1"))
    p = planner.plan(fleet(3), snap, strategy="shared-port")
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.18.250.1"  # what a forced up would print
    found = [f for f in conflicts.check(p, snap) if f.code == "interface-no-broadcast"]
    assert len(found) == 1 and found[0].severity == "error" and found[0].rule == "R4"
    assert "ip addr add 198.18.250.1/24 brd + dev d0" in found[0].fix and "added without brd" in found[0].message


def test_slash_31_and_point_to_point_addresses_have_no_broadcast_either():
    for address, kind in (("198.18.252.1", "/31"), ("198.18.253.1", "peer 198.18.253.2")):
        snap = host(kernel_iface(address))
        p = planner.plan(fleet(2), snap)
        assert (p.strategy, p.broadcast) == ("distinct-ports", None), address
        assert kind in " ".join(d.text for d in p.decisions)
        forced = planner.plan(fleet(2), snap, strategy="shared-port")
        assert "interface-no-broadcast" in {f.code for f in conflicts.check(forced, snap)}


def test_secondary_addresses_bind_the_first_with_a_broadcast_and_use_that_broadcast():
    snap = host(kernel_iface("198.18.250.1", "198.18.251.1"))
    p = planner.plan(fleet(3), snap)
    assert (p.strategy, p.address, p.broadcast) == ("shared-port", "198.18.251.1", "198.18.251.255")
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.18.251.255"
    assert {i.bind for i in p.iocs} == {("198.18.251.1", "198.18.251.255")}
    text = " ".join(d.text for d in p.decisions)
    assert "198.18.250.1/24 (broadcast none)" in text and "not bound" in text


def _sweep(answers, expected_at, fresh=2, fixed=2):
    rounds = tuple([SweepRound(i, FRESH, 40000 + i) for i in range(fresh)]
                   + [SweepRound(fresh + i, FIXED, 41000) for i in range(fixed)])
    names = tuple(expected_at)
    dests = tuple(dict.fromkeys(d for ds in expected_at.values() for d in ds))
    return Sweep(names, dests, expected_at, rounds, answers)


def test_path_reach_names_the_ioc_a_fixed_port_client_is_stuck_with():
    dest = ("198.18.250.1", 5064)
    owner = {"A:X": "a", "B:X": "b", "C:X": "c"}
    srv = {"a": ("198.18.250.1", 5064), "b": ("198.18.250.1", 40001), "c": ("198.18.250.1", 40002)}
    # unicast to a shared port: each round's socket hashes to one IOC; the fixed socket always to b
    per_round = {0: "a", 1: "c", 2: "b", 3: "b"}
    answers = {(r, dest, pv): frozenset({srv[ioc]}) for r, ioc in per_round.items()
               for pv, o in owner.items() if o == ioc}
    result = _sweep(answers, {pv: (dest,) for pv in owner})
    path = readiness.path_reach(result, dest, owner)
    assert not path.full and path.missing == ("A:X", "B:X", "C:X")
    assert path.stuck_with == ("b",) and path.expected_iocs == ("a", "b", "c")
    assert (round(path.fixed, 3), round(path.fresh, 3)) == (0.333, 0.333)
    assert "stuck with b of a, b, c" in path.text() and "R3" in path.text()


def test_path_reach_is_full_when_every_round_answered():
    dest = ("127.255.255.255", 5064)
    owner = {"A:X": "a", "B:X": "b"}
    answers = {(r, dest, pv): frozenset({("127.0.0.1", 5064)}) for r in range(4) for pv in owner}
    path = readiness.path_reach(_sweep(answers, {pv: (dest,) for pv in owner}), dest, owner)
    assert path.full and (path.fresh, path.fixed) == (1.0, 1.0) and path.stuck_with == ("a", "b")


def test_each_pv_is_expected_only_at_entries_on_its_iocs_port():
    p = planner.plan(fleet(3), host(LO), interface="lo", strategy="distinct-ports")
    wanted = {i.name: i.pv_names for i in p.iocs}
    dests = readiness.client_destinations(p.client_env_dict())
    expected = readiness.expected_destinations(p, wanted, dests)
    for ioc in p.iocs:
        assert all(expected[pv] == [("127.0.0.1", ioc.udp_port)] for pv in ioc.pv_names)


def test_full_reach_sweeps_again_before_calling_a_path_partial():
    p = planner.plan(fleet(2), host(LO), interface="lo")
    wanted = {i.name: i.pv_names for i in p.iocs}
    dests = readiness.client_destinations(p.client_env_dict())
    calls = []

    def flaky(names, destinations, expected):
        calls.append(1)
        full = len(calls) > 1  # a random loss the first time only
        answers = {(r, d, n): frozenset({("127.0.0.1", 5064)}) for r in range(4) for n in names
                   for d in expected[n] if full or n != names[0]}
        return _sweep(answers, {n: tuple(expected[n]) for n in names})

    paths = readiness.full_reach(p, wanted, dests, flaky)
    assert len(calls) == 2 and all(path.full for path in paths)


def _record(**kw):
    from orchestrator.run.netrecord import NetRecord

    base = dict(fleet="e", interface="d0", address="198.18.251.1", broadcast="198.18.251.255",
                client_addr_list="198.18.251.255")
    return NetRecord(**{**base, **kw})


def test_stale_fleet_when_the_address_the_fleet_binds_is_gone():
    from orchestrator.run.netrecord import stale_findings

    now = host(kernel_iface("198.18.250.1"))  # re-addressed: 198.18.251.1 is no longer there
    [f] = stale_findings(_record(), now)
    assert (f.code, f.severity) == ("stale-fleet", "error")
    assert "address 198.18.251.1 of d0 is gone (now: 198.18.250.1)" in f.message and "iocfleet up" in f.fix


def test_stale_fleet_when_the_interface_went_down_or_away_or_lost_its_broadcast():
    from dataclasses import replace

    from orchestrator.run.netrecord import stale_findings

    iface = kernel_iface("198.18.251.1")
    assert stale_findings(_record(), host(iface)) == []
    assert "went down" in stale_findings(_record(), host(replace(iface, up=False)))[0].message
    assert "is gone" in stale_findings(_record(interface="d9"), host(iface))[0].message
    lost = replace(iface, ipv4=(replace(iface.ipv4[0], broadcast=None),))
    assert "changed from 198.18.251.255 to none" in stale_findings(_record(), host(lost))[0].message
    assert stale_findings(None, host(iface)) == []


def test_a_loopback_fleet_is_not_stale_on_an_unchanged_host():
    from orchestrator.run.netrecord import NetRecord, stale_findings

    p = planner.plan(fleet(3), host(LO), interface="lo")
    assert stale_findings(NetRecord.of(p), host(LO)) == []


def test_the_kernel_routes_the_subnet_top_address_as_broadcast_with_or_without_brd():
    from orchestrator.ca import rules

    iface = kernel_iface()
    assert iface.broadcasts() == ("198.18.251.255",)  # only the one configured with brd
    assert iface.routed_broadcasts() == ("198.18.251.255", "198.18.250.255")  # not the /31, not the peer
    sockets = [s for o in "abc" for s in rules.server_sockets("caproto", "0.0.0.0", 5064, o, interfaces=[iface])]
    to_top = rules.predict(sockets, rules.Datagram("198.18.250.255", 5064), [iface])
    assert (to_top.kind, to_top.receivers) == ("all", ("a", "b", "c"))
    to_ip = rules.predict(sockets, rules.Datagram("198.18.250.1", 5064), [iface])
    assert to_ip.kind == "one-of"


def test_rsrv_given_a_no_brd_address_holds_two_sockets_on_it():
    from orchestrator.ca import rules

    iface = kernel_iface("198.18.250.1")
    socks = rules.server_sockets("softioc", "198.18.250.1", 5064, "s", interfaces=[iface])
    assert [s.bind for s in socks] == ["198.18.250.1", "198.18.250.1"]


def test_rsrv_on_a_point_to_point_address_binds_the_peer_and_never_starts():
    from orchestrator.ca import rules

    iface = kernel_iface("198.18.253.1")
    socks = rules.server_sockets("softioc", "198.18.253.1", 5064, "s", interfaces=[iface])
    assert [(s.bind, s.local) for s in socks] == [("198.18.253.1", True), ("198.18.253.2", False)]
    assert rules.live_sockets(socks) == ()
    cp = rules.server_sockets("caproto", "198.18.253.1", 5064, "c", interfaces=[iface])
    assert rules.live_sockets(cp) == cp


def test_softioc_on_a_point_to_point_interface_is_planned_on_0000_and_its_own_port():
    iocs = [{"name": "c", "runtime": "caproto", "prefix": "P:C:"}, {"name": "s", "runtime": "softioc", "prefix": "P:S:"}]
    f = spec.from_dict({"fleet": "p", "network": {"interface": "d0"}, "iocs": iocs})
    p = planner.plan(f, host(kernel_iface("198.18.253.1")))
    assert p.strategy == "distinct-ports"
    assert {i.name: i.bind for i in p.iocs} == {"c": ("198.18.253.1",), "s": ("0.0.0.0",)}
    assert "binds the peer 198.18.253.2" in " ".join(d.text for d in p.decisions).replace("also binds", "binds")
