"""Conflict checks: each finding code from a plan and a made-up host."""

from __future__ import annotations

from hosts import DOWN, P2P, host, tcp_holder, udp_holder
from orchestrator.plan import conflicts
from orchestrator.plan import planner
from orchestrator import spec


def fleet(n=3, **network):
    iocs = [{"name": f"ioc{i}", "prefix": f"T:{i}:", "pvs": [{"name": "X"}]} for i in range(n)]
    return spec.from_dict({"fleet": "t", "network": network, "iocs": iocs})


def codes(plan, snap, **kw):
    return {(f.code, f.severity) for f in conflicts.check(plan, snap, **kw)}


def test_clean_shared_port_plan_has_no_errors():
    snap = host()
    found = conflicts.check(planner.plan(fleet(3), snap), snap)
    assert not conflicts.has_errors(found)
    assert {f.code for f in found} == {"repeater-missing"}


def test_duplicate_pvs_across_iocs_and_replicas_are_errors():
    data = {"fleet": "t", "iocs": [{"name": "a", "prefix": "SAME:", "pvs": ["X"]}, {"name": "b", "prefix": "SAME:", "pvs": ["X", "Y"]}]}
    snap = host()
    found = [f for f in conflicts.check(planner.plan(spec.from_dict(data), snap), snap) if f.code == "duplicate-pv"]
    assert {f.message.split()[1] for f in found} == {"SAME:X", "SAME:HEARTBEAT", "SAME:UPTIME"}
    assert all(f.severity == "error" and f.subjects == ("a", "b") for f in found)


def test_interface_missing_down_and_without_broadcast():
    snap = host(DOWN, P2P)
    assert ("interface-missing", "error") in codes(planner.plan(fleet(), snap, interface="nope0"), snap)
    assert ("interface-down", "error") in codes(planner.plan(fleet(), snap, interface="eth2"), snap)
    shared = planner.plan(fleet(), snap, interface="tun0", strategy="shared-port")
    assert ("interface-no-broadcast", "error") in codes(shared, snap)


def test_forced_single_on_loopback_with_many_iocs():
    snap = host()
    found = codes(planner.plan(fleet(3), snap, interface="lo", strategy="single"), snap)
    assert {("loopback-bind-multi-ioc", "error"), ("unicast-addr-list-multi-ioc", "error"), ("tcp-port-clash", "error")} <= found


def test_udp_port_held_without_reuse_is_an_error_naming_the_pid():
    snap = host(holders=[udp_holder(reuse_ok=False, pid=777)])
    found = [f for f in conflicts.check(planner.plan(fleet(), snap), snap) if f.code == "port-held-without-reuse"]
    assert len(found) == 1 and found[0].severity == "error" and "pid 777" in found[0].message


def test_the_fleets_own_processes_are_not_conflicts():
    snap = host(holders=[udp_holder(reuse_ok=False, pid=777)])
    assert "port-held-without-reuse" not in {f.code for f in conflicts.check(planner.plan(fleet(), snap), snap, own_pids=frozenset({777}))}


def test_reuse_holder_of_another_uid_is_a_uid_mismatch_warning():
    snap = host(holders=[udp_holder(reuse_ok=True, uid=0)])
    p = planner.plan(fleet(), snap, ioc_uid=10064)
    assert ("reuseport-uid-mismatch", "warning") in codes(p, snap)


def test_iocs_of_different_users_on_a_shared_port():
    data = {"fleet": "t", "iocs": [{"name": "a", "prefix": "A:", "runtime": "image", "image": "x:1", "user": "1000"},
                                   {"name": "b", "prefix": "B:", "runtime": "image", "image": "x:1", "user": "2000"}]}
    snap = host()
    assert ("reuseport-uid-mismatch", "error") in codes(planner.plan(spec.from_dict(data), snap, interface="lo"), snap)


def test_tcp_port_clash_with_a_foreign_listener_in_distinct_ports():
    snap = host(holders=[tcp_holder(port=5066, pid=999)])
    found = [f for f in conflicts.check(planner.plan(fleet(3, strategy="distinct-ports"), snap), snap) if f.code == "tcp-port-clash"]
    assert len(found) == 1 and found[0].subjects == ("999",)


def test_ports_out_of_range():
    data = {"fleet": "t", "network": {"strategy": "distinct-ports", "base_port": 65270},
            "iocs": [{"name": "a", "prefix": "A:", "replicas": 150}, {"name": "b", "prefix": "B:", "replicas": 150}]}
    snap = host()
    assert ("port-out-of-range", "error") in codes(planner.plan(spec.from_dict(data), snap), snap)


def test_repeater_present_means_no_repeater_finding():
    snap = host(holders=[udp_holder(port=5065, reuse_ok=True)])
    assert "repeater-missing" not in {c for c, _ in codes(planner.plan(fleet(), snap), snap)}


def test_errors_sort_first():
    snap = host()
    found = conflicts.check(planner.plan(fleet(3), snap, interface="lo", strategy="single"), snap)
    severities = [f.severity for f in found]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)
