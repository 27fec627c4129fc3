"""network.fanout: dnat (R17): the planned table, binds and findings (pure)."""

from __future__ import annotations

from hosts import host
from orchestrator.plan import conflicts, fanout, planner
from orchestrator import spec


def fleet(n=3, **network):
    iocs = [{"name": f"i{k}", "runtime": "caproto" if k else "softioc", "prefix": f"F:{k}:"} for k in range(n)]
    return spec.from_dict({"fleet": "fan-1", "network": {"fanout": "dnat", **network}, "iocs": iocs})


def test_fanout_rewrites_host_ip_and_loopback_to_the_broadcasts_in_a_fleet_table():
    p = planner.plan(fleet(), host())
    assert p.fanout.table.startswith("iocfleet_fan_1_") and p.fanout.table != fanout.table_name("fan_1")
    rules = {(r.chain, r.daddr, r.to) for r in p.fanout.rules}
    assert rules == {("prerouting", "198.51.100.7", "198.51.100.255"), ("output", "198.51.100.7", "198.51.100.255"),
                     ("output", "127.0.0.1", "127.255.255.255")}
    assert p.fanout.rules[0].argv(p.fanout.table) == [
        "nft", "add", "rule", "ip", p.fanout.table, "prerouting", "ip", "daddr", "198.51.100.7", "udp", "dport",
        "5064", "dnat", "to", "198.51.100.255"]
    explain = " ".join(d.text for d in p.decisions if d.rule == "R17")
    assert "Side effect" in explain and "198.51.100.255" in explain


def test_fanout_binds_the_wildcard_and_raises_no_error():
    p = planner.plan(fleet(), host())
    assert {i.bind for i in p.iocs} == {("0.0.0.0",)}
    assert not [f for f in conflicts.check(p, host()) if f.code.startswith("fanout")]


def test_fanout_with_distinct_ports_is_flagged():
    p = planner.plan(fleet(), host(), strategy="distinct-ports")
    codes = {f.code for f in conflicts.check(p, host())}
    assert {"fanout-not-shared", "fanout-specific-bind"} <= codes


def test_no_fanout_by_default():
    f = spec.from_dict({"fleet": "x", "iocs": [{"name": "a", "prefix": "A:"}, {"name": "b", "prefix": "B:"}]})
    assert planner.plan(f, host()).fanout is None and f.network.fanout == "none"
