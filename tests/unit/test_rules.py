"""The delivery model (rules.py): pure checks of each rule, plus properties over generated fleets."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.ca import rules
from orchestrator.hostmodel import IPv4, Interface
from orchestrator.ca.rules import Datagram, Socket

LO = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
ETH = Interface("eth1", True, False, True, True, 1500, (IPv4.from_cidr("10.9.8.7/24"),))
IFACES = (LO, ETH)
IP, BCAST, P = "10.9.8.7", "10.9.8.255", 5064


NOBRD = Interface("eth2", True, False, True, True, 1500, (IPv4.from_cidr("10.7.0.1/24", broadcast=False),))


def test_rsrv_holds_two_sockets_on_an_address_without_broadcast_and_gets_two_thirds_of_unicast():
    """Measured (mix2-lo): caproto + softioc on 127.0.0.1 split unicast 1/3 : 2/3, not 1/2 : 1/2."""
    ifaces = (LO, NOBRD)
    assert [s.bind for s in rules.server_sockets("softioc", "10.7.0.1", P, "a", 0, ifaces)] == ["10.7.0.1"] * 2
    for addr in ("127.0.0.1", "10.7.0.1"):
        s = (rules.server_sockets("caproto", addr, P, "a", 0, ifaces)
             + rules.server_sockets("softioc", addr, P, "b", 0, ifaces))
        p = rules.predict(s, Datagram(addr, P), ifaces)
        assert p.kind == "one-of" and p.share("a") == 1 / 3 and p.share("b") == 2 / 3
    # an address no interface owns gets no companion
    assert [s.bind for s in rules.server_sockets("softioc", "10.7.0.255", P, "a", 0, ifaces)] == ["10.7.0.255"]


def test_share_band_of_the_truth_matrix_separates_shares_one_socket_apart():
    """The matrix judges shares over 960 searches in a 4.5 sigma band: a model one socket off (1/2 vs
    2/3, 1/3 vs 1/2, either way round) predicts a band the true count lands far outside of (>= 4 sigma)."""
    from orchestrator.ca import probe

    n, z = 960, 4.5
    for model, truth in ((1 / 2, 2 / 3), (1 / 3, 1 / 2), (1 / 2, 1 / 3), (2 / 3, 1 / 2)):
        lo, hi = probe.binomial_band(n, model, z=z)
        sd = (n * truth * (1 - truth)) ** 0.5
        mean = n * truth
        gap = (lo - mean) / sd if mean < lo else (mean - hi) / sd
        assert gap >= 4, (model, truth, lo, hi, mean, gap)


def socks(*specs):
    """(owner, runtime, intf list[, uid]) -> sockets in start order."""
    out = []
    for spec in specs:
        owner, runtime, intf, *uid = spec
        out += rules.server_sockets(runtime, intf, P, owner, uid[0] if uid else 0, IFACES)
    return out


def test_caproto_binds_exactly_the_list_and_rsrv_adds_the_interface_broadcast():
    assert [s.bind for s in rules.server_sockets("caproto", IP, P, "a", 0, IFACES)] == [IP]
    assert [s.bind for s in rules.server_sockets("softioc", IP, P, "a", 0, IFACES)] == [IP, BCAST]
    # rsrv's companion of an address without a broadcast is the address itself: two sockets (R10)
    assert [s.bind for s in rules.server_sockets("softioc", "127.0.0.1", P, "a", 0, IFACES)] == ["127.0.0.1"] * 2
    assert [s.bind for s in rules.server_sockets("softioc", BCAST, P, "a", 0, IFACES)] == [BCAST]
    assert [s.bind for s in rules.server_sockets("caproto", "", P, "a")] == ["0.0.0.0"]
    assert [s.bind for s in rules.server_sockets("caproto", f"{IP}:7000", P, "a")] == [IP]


def test_tcp_listens_where_udp_binds_so_a_broadcast_bind_is_unreachable_over_tcp():
    assert rules.tcp_listen_addresses("caproto", BCAST) == (BCAST,)
    assert not rules.tcp_connect_ok((BCAST,), IP)
    assert rules.tcp_connect_ok((IP, BCAST), IP)
    assert rules.tcp_connect_ok(("0.0.0.0",), "127.0.0.1")


def test_unicast_to_a_shared_port_reaches_one_of_n():
    p = rules.predict(socks(("a", "caproto", ""), ("b", "softioc", ""), ("c", "caproto", "")),
                      Datagram(IP, P, "eth1"), IFACES)
    assert (p.kind, p.receivers, p.rules[0]) == ("one-of", ("a", "b", "c"), "R3")
    assert abs(sum(p.shares) - 1) < 1e-9


def test_broadcast_reaches_every_wildcard_and_broadcast_bind_but_no_unicast_bind():
    s = socks(("a", "caproto", ""), ("b", "caproto", BCAST), ("c", "caproto", IP))
    p = rules.predict(s, Datagram(BCAST, P, "eth1"), IFACES)
    assert (p.kind, p.receivers) == ("all", ("a", "b"))
    assert "R5" in p.rules


def test_broadcast_bind_hears_no_unicast_and_exact_bind_beats_wildcard():
    s = socks(("a", "caproto", ""), ("b", "caproto", BCAST), ("c", "caproto", IP))
    p = rules.predict(s, Datagram(IP, P, "eth1"), IFACES)
    assert (p.kind, p.receivers) == ("all", ("c",))
    assert rules.predict(socks(("b", "caproto", BCAST)), Datagram(IP, P), IFACES).kind == "none"


def test_loopback_broadcast_reaches_all_local_wildcards_but_not_remote_clients():
    s = socks(("a", "caproto", ""), ("b", "softioc", ""))
    assert rules.predict(s, Datagram("127.255.255.255", P), IFACES).receivers == ("a", "b")
    assert rules.predict(s, Datagram("127.0.0.1", P), IFACES).kind == "one-of"
    assert rules.predict(s, Datagram("127.0.0.1", P, "eth1"), IFACES).kind == "none"
    assert rules.predict(socks(("a", "caproto", "127.0.0.1")), Datagram("127.255.255.255", P), IFACES).kind == "none"


def test_different_uids_all_bind_and_the_newest_group_takes_all_unicast():
    s = socks(("a", "caproto", "", 0), ("b", "caproto", "", 0), ("c", "softioc", "", 65534))
    assert all(o.ok for o in rules.bind_outcomes(s))
    p = rules.predict(s, Datagram(IP, P), IFACES)
    assert (p.kind, p.receivers) == ("all", ("c",)) and "R2" in p.rules
    s = socks(("c", "softioc", "", 65534), ("a", "caproto", "", 0), ("b", "caproto", "", 0))
    assert rules.predict(s, Datagram(IP, P), IFACES).receivers == ("a", "b")


def test_a_socket_without_reuse_blocks_later_servers_and_is_blocked_by_earlier_ones():
    holder = Socket("h", "other", "0.0.0.0", P, reuse=False, reuseport=False)
    a = rules.server_sockets("caproto", IP, P, "a", 0, IFACES)
    out = rules.bind_outcomes([holder, *a])
    assert [o.ok for o in out] == [True, False] and out[1].conflict_with == "h" and out[1].rule == "R1"
    assert [o.ok for o in rules.bind_outcomes([*a, holder])] == [True, False]
    assert {s.owner for s in rules.live_sockets([holder, *a])} == {"h"}


def test_reuseport_only_needs_the_same_uid_but_reuseaddr_on_both_does_not():
    a = Socket("a", "caproto", "0.0.0.0", P, uid=0)
    assert rules.bind_outcomes([a, Socket("h", "x", "0.0.0.0", P, reuse=False, reuseport=True, uid=0)])[1].ok
    bad = rules.bind_outcomes([a, Socket("h", "x", "0.0.0.0", P, reuse=False, reuseport=True, uid=7)])[1]
    assert not bad.ok and bad.rule == "R2"
    assert rules.bind_outcomes([a, Socket("h", "x", "0.0.0.0", P, reuse=True, reuseport=False, uid=7)])[1].ok


def test_reach_combines_address_list_entries():
    s = socks(("a", "caproto", ""), ("b", "caproto", ""))
    assert rules.reach([(IP, P)], s, IFACES, "eth1") == {"a": 0.5, "b": 0.5}
    assert rules.reach([(BCAST, P)], s, IFACES, "eth1") == {"a": 1.0, "b": 1.0}
    assert rules.reach([(IP, P), (IP, P)], s, IFACES, "eth1") == {"a": 0.75, "b": 0.75}
    assert rules.reaches_all([(BCAST, P), (IP, P)], s, IFACES, "eth1")
    assert not rules.reaches_all([(IP, P)], s, IFACES, "eth1")
    assert not rules.reaches_all([("192.0.2.99", P)], s, IFACES, "eth1")


def test_reply_source_is_the_bound_ip_or_the_kernels_choice():
    assert rules.reply_source(IP, "10.9.8.1", IFACES) == IP
    assert rules.reply_source(BCAST, "10.9.8.1", IFACES) == IP
    assert rules.reply_source("0.0.0.0", "127.0.0.1", IFACES) == "127.0.0.1"
    assert rules.reply_source("0.0.0.0", IP, IFACES) == IP


def test_prediction_serialises():
    p = rules.predict(socks(("a", "caproto", "")), Datagram(IP, P), IFACES)
    assert p.to_dict() == {"kind": "all", "receivers": ["a"], "rules": ["R3"], "shares": [1.0]}


server = st.tuples(st.sampled_from(rules.RUNTIMES), st.sampled_from(["", IP, BCAST, "127.0.0.1", f"{IP} {BCAST}"]),
                   st.sampled_from([0, 0, 65534]))
DESTS = [IP, BCAST, "127.0.0.1", "127.255.255.255"]


@settings(max_examples=300, deadline=None)
@given(st.lists(server, min_size=1, max_size=5), st.sampled_from(DESTS), st.sampled_from(["local", "eth1"]))
def test_every_prediction_is_consistent(servers, dst, sender):
    s = socks(*[(f"s{i}", rt, intf, uid) for i, (rt, intf, uid) in enumerate(servers)])
    p = rules.predict(s, Datagram(dst, P, sender), IFACES)
    live = {x.owner for x in rules.live_sockets(s)}
    assert set(p.receivers) <= live
    assert len(p.receivers) == len(p.shares)
    if p.kind == "none":
        assert not p.receivers
    elif p.kind == "all":
        assert p.receivers and all(x == 1.0 for x in p.shares)
    else:
        assert len(p.receivers) > 1 and abs(sum(p.shares) - 1) < 1e-9
    if dst in (BCAST, "127.255.255.255") and (sender == "local" or dst == BCAST):
        wild = {x.owner for x in rules.live_sockets(s) if x.bind in ("0.0.0.0", dst)}
        assert set(p.receivers) == wild
    if dst.startswith("127.") and sender != "local":
        assert p.kind == "none"
