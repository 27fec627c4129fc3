"""Strategy name-server (R15): the plan, the client settings, the names file, and the checks."""

from __future__ import annotations


from hosts import LO, P2P, host, tcp_holder, udp_holder
from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan import conflicts, multihost, nameserver, planner
from orchestrator import spec


def fleet(n=6, runtime="caproto", iocs=None, **network) -> spec.FleetSpec:
    iocs = iocs or [{"name": f"ioc{i}", "runtime": runtime, "prefix": f"T:{i}:", "pvs": [{"name": "X"}]}
                    for i in range(n)]
    return spec.from_dict({"fleet": "t", "network": network, "iocs": iocs})


def codes(p, snap):
    return {f.code for f in conflicts.check(p, snap)}


def test_auto_picks_the_name_server_for_routed_clients_of_five_or_more_iocs_and_explains_why():
    p = planner.plan(fleet(6, clients="routed"), host())
    assert p.strategy == "name-server"
    why = [d.text for d in p.decisions if d.rule == "R15"]
    assert any("Strategy name-server" in t and "6 IOCs" in t for t in why)
    assert any("Side effect" in t and "198.51.100.255" in t for t in why)


def test_few_routed_iocs_or_no_broadcast_keep_distinct_ports():
    assert planner.plan(fleet(4, clients="routed"), host()).strategy == "distinct-ports"
    no_brd = HostSnapshot((LO, P2P), "tun0", ())
    assert planner.plan(fleet(8, clients="routed"), no_brd).strategy == "distinct-ports"


def test_client_settings_are_one_name_server_endpoint_over_tcp_and_udp():
    p = planner.plan(fleet(6, clients="routed"), host())
    assert p.client_env_dict() == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "198.51.100.7:5066",
                                   "EPICS_CA_NAME_SERVERS": "198.51.100.7:5066"}
    assert p.name_server.endpoint == "198.51.100.7:5066"
    assert p.to_dict()["name_server"]["endpoint"] == "198.51.100.7:5066"


def test_iocs_share_one_port_with_shared_port_binds():
    p = planner.plan(fleet(6, runtime="softioc", clients="routed"), host())
    shared = planner.plan(fleet(6, runtime="softioc", clients="routed"), host(), strategy="shared-port")
    assert {i.udp_port for i in p.iocs} == {5064} and {i.tcp_port for i in p.iocs} == {None}
    assert [i.bind for i in p.iocs] == [i.bind for i in shared.iocs]
    # IOC links search where clients do: through the name server
    assert {i.env_dict()["EPICS_CA_ADDR_LIST"] for i in p.iocs} == {"198.51.100.7:5066"}


def test_names_file_lists_every_pv_under_its_ioc_and_the_discovery_broadcast():
    p = planner.plan(fleet(6, clients="routed"), host())
    data = p.name_server.names_file(p.fleet)
    assert data["search"] == [["198.51.100.255", 5064]]
    assert data["iocs"]["ioc3"] == {"address": "198.51.100.7", "pvs": list(p.ioc("ioc3").pv_names)}
    assert sum(len(e["pvs"]) for e in data["iocs"].values()) == sum(len(i.pv_names) for i in p.iocs)


def test_on_loopback_the_name_server_discovers_through_127_255_255_255():
    p = planner.plan(fleet(3, interface="lo"), host(), strategy="name-server")
    assert p.name_server.search == (("127.255.255.255", 5064),)
    assert p.client_env_dict()["EPICS_CA_NAME_SERVERS"] == "127.0.0.1:5066"


def test_name_server_port_skips_the_repeater_port():
    assert nameserver.port_for(5064) == 5066
    assert nameserver.port_for(5063) == 5066
    assert nameserver.port_for(7000) == 7002


def test_a_held_name_server_port_is_an_error_unless_the_fleet_holds_it():
    p = planner.plan(fleet(6, clients="routed"), host())
    busy = host(holders=(tcp_holder(5066, pid=77), udp_holder(5066, pid=78)))
    assert "name-server-port-held" in codes(p, busy)
    assert "name-server-port-held" not in {f.code for f in conflicts.check(p, busy, frozenset({77, 78}))}
    assert not conflicts.has_errors(conflicts.check(p, host()))


def test_duplicate_pv_is_still_an_error_under_a_name_server():
    iocs = [{"name": f"ioc{i}", "runtime": "caproto", "prefix": "SAME:", "pvs": [{"name": "X"}]} for i in range(5)]
    p = planner.plan(fleet(iocs=iocs, clients="routed"), host())
    assert p.strategy == "name-server"
    assert "duplicate-pv" in codes(p, host())


def test_no_broadcast_interface_is_an_error_when_the_name_server_is_forced():
    snap = HostSnapshot((LO, P2P), "tun0", ())
    p = planner.plan(fleet(6, clients="routed"), snap, strategy="name-server")
    assert "name-server-no-broadcast" in codes(p, snap)


def test_multihost_client_settings_list_one_name_server_per_host():
    hosts = [{"name": "a", "address": "10.0.1.5/24"}, {"name": "b", "address": "10.0.2.6/24"}]
    iocs = [{"name": f"i{k}{h}", "runtime": "caproto", "prefix": f"{h}:{k}:", "host": h} for h in "ab" for k in range(5)]
    f = spec.from_dict({"fleet": "m", "network": {"clients": "routed"}, "hosts": hosts, "iocs": iocs})
    plans = multihost.plan_hosts(f, host())
    assert {p.strategy for p in plans.values()} == {"name-server"}
    env = dict(multihost.client_env(plans))
    assert env["EPICS_CA_NAME_SERVERS"] == "10.0.1.5:5066 10.0.2.6:5066"
    assert env["EPICS_CA_ADDR_LIST"] == "10.0.1.5:5066 10.0.2.6:5066"
    assert {n for p in plans.values() for n, _, _ in p.name_server.iocs} == {i["name"] for i in iocs}
