"""The planner: strategies, binds, ports, environments and client settings from the rules."""

from __future__ import annotations

import json

import pytest

from hosts import DOWN, ETH, LO, P2P, host
from orchestrator.plan import planner
from orchestrator import spec


def fleet(n=3, runtime="caproto", **network) -> spec.FleetSpec:
    iocs = [{"name": f"ioc{i}", "runtime": runtime, "prefix": f"T:{i}:", "pvs": [{"name": "X"}]} for i in range(n)]
    return spec.from_dict({"fleet": "t", "network": network, "iocs": iocs})


def rules_cited(p) -> set[str]:
    return {d.rule for d in p.decisions}


def test_demo_on_loopback_is_shared_port_bound_to_wildcard_with_loopback_broadcast():
    p = planner.plan(spec.load("examples/demo.yaml"), host())
    assert (p.strategy, p.interface) == ("shared-port", "lo")
    assert {i.bind for i in p.iocs} == {("0.0.0.0",)}
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "127.255.255.255"
    assert p.client_env_dict()["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    for ioc in p.iocs:
        env = ioc.env_dict()
        assert env["EPICS_CAS_BEACON_ADDR_LIST"] == "127.255.255.255"
        assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert {"R4", "R7", "R11"} <= rules_cited(p)


def test_auto_interface_is_the_default_route_and_subnet_clients_get_its_broadcast():
    p = planner.plan(fleet(3), host())
    assert (p.strategy, p.interface, p.address, p.broadcast) == ("shared-port", "eth1", "198.51.100.7", "198.51.100.255")
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.51.100.255"


def test_no_default_route_falls_back_to_loopback():
    p = planner.plan(fleet(2), host(default=None))
    assert p.interface == "lo"
    assert p.clients == "same-host"


def test_one_ioc_is_single_and_binds_the_interface_address():
    p = planner.plan(fleet(1), host())
    assert p.strategy == "single"
    (ioc,) = p.iocs
    assert ioc.bind == ("198.51.100.7",)
    assert (ioc.udp_port, ioc.tcp_port) == (5064, 5064)
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.51.100.7"


def test_routed_clients_get_distinct_ports_and_host_port_entries_skipping_the_repeater_port():
    p = planner.plan(fleet(3, clients="routed"), host())
    assert p.strategy == "distinct-ports"
    assert [i.udp_port for i in p.iocs] == [5064, 5066, 5067]
    assert [i.tcp_port for i in p.iocs] == [5064, 5066, 5067]
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "198.51.100.7:5064 198.51.100.7:5066 198.51.100.7:5067"
    assert "EPICS_CA_SERVER_PORT" not in p.client_env_dict()


def test_interface_without_broadcast_gets_distinct_ports():
    p = planner.plan(fleet(2), host(P2P), interface="tun0")
    assert p.strategy == "distinct-ports"


def test_every_ioc_env_sets_both_server_port_variables_and_explicit_beacons():
    p = planner.plan(fleet(4, runtime="softioc", base_port=6000, strategy="distinct-ports"), host())
    for ioc in p.iocs:
        env = ioc.env_dict()
        assert env["EPICS_CA_SERVER_PORT"] == env["EPICS_CAS_SERVER_PORT"] == str(ioc.udp_port)
        assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
        assert env["EPICS_CAS_BEACON_ADDR_LIST"] == "198.51.100.255"
        assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
        assert env["EPICS_CA_ADDR_LIST"] == p.client_env_dict()["EPICS_CA_ADDR_LIST"]


def test_ioc_program_payload_lists_its_pvs_with_the_expanded_prefix():
    data = {"fleet": "t", "iocs": [{"name": "m", "prefix": "BL:M{i}:", "replicas": 2, "pvs": [{"name": "POS", "sim": "sine"}]},
                                   {"name": "v", "prefix": "BL:V:", "replicas": 2}]}
    p = planner.plan(spec.from_dict(data), host())
    assert [(i.name, i.prefix) for i in p.iocs] == [("m-1", "BL:M1:"), ("m-2", "BL:M2:"), ("v-1", "BL:V:1:"), ("v-2", "BL:V:2:")]
    payload = json.loads(p.ioc("m-2").env_dict()["IOCFLEET_IOC"])
    assert payload["prefix"] == "BL:M2:"
    assert payload["pvs"][0]["name"] == "POS" and payload["pvs"][0]["sim"] == "sine"
    assert p.ioc("m-1").pv_names == ("BL:M1:POS", "BL:M1:HEARTBEAT", "BL:M1:UPTIME")


def test_image_runtime_gets_the_network_env_and_keeps_user_env():
    data = {"fleet": "t", "iocs": [{"name": "ext", "runtime": "image", "image": "site/ioc:1", "prefix": "E:",
                                    "command": ["/ioc/st.cmd"], "env": {"ENGINEER": "me"}}]}
    (ioc,) = planner.plan(spec.from_dict(data), host()).iocs
    env = ioc.env_dict()
    assert "IOCFLEET_IOC" not in env
    assert env["ENGINEER"] == "me" and env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
    assert ioc.command == ("/ioc/st.cmd",)


@pytest.mark.parametrize("override", ["single", "shared-port", "distinct-ports"])
def test_command_line_strategy_overrides_the_file(override):
    p = planner.plan(fleet(2, strategy="shared-port"), host(), strategy=override)
    assert p.strategy == override


def test_missing_interface_still_plans_so_check_can_report_it():
    p = planner.plan(fleet(2), host(), interface="nope0")
    assert p.interface == "nope0" and p.address is None
    assert all(i.bind == ("0.0.0.0",) for i in p.iocs)


def test_down_interface_is_planned_on_when_named():
    p = planner.plan(fleet(2), host(DOWN), interface="eth2")
    assert p.broadcast == "203.0.113.255"


def test_plan_json_has_the_stable_keys():
    data = planner.plan(fleet(2), host()).to_dict()
    assert {"fleet", "strategy", "interface", "iocs", "client_env", "decisions", "findings"} <= set(data)
    assert {"name", "runtime", "prefix", "env", "udp_port", "tcp_port", "pvs"} <= set(data["iocs"][0])
    assert {"rule", "text"} == set(data["decisions"][0])
    json.dumps(data)


def test_loopback_and_eth_fixtures_are_what_the_tests_assume():
    assert LO.broadcasts() == ("127.255.255.255",) and ETH.broadcasts() == ("198.51.100.255",)


def test_shared_port_on_a_network_interface_restricts_each_runtime_to_it():
    data = {"fleet": "t", "iocs": [{"name": "c", "runtime": "caproto", "prefix": "C:"},
                                   {"name": "s", "runtime": "softioc", "prefix": "S:"}]}
    p = planner.plan(spec.from_dict(data), host())
    assert p.strategy == "shared-port"
    assert p.ioc("c").bind == ("198.51.100.7", "198.51.100.255")  # R6: TCP on the IP, UDP also on the broadcast
    assert p.ioc("s").bind == ("198.51.100.7",)  # R10: rsrv adds the broadcast socket itself
    assert p.ioc("c").env_dict()["EPICS_CAS_INTF_ADDR_LIST"] == "198.51.100.7 198.51.100.255"
    assert {"R6", "R10"} <= rules_cited(p)


def test_plan_explain_on_the_demo_cites_the_loopback_rules():
    from click.testing import CliRunner

    from orchestrator.cli import cli

    result = CliRunner().invoke(cli, ["plan", "examples/demo.yaml", "--explain"])
    out = result.output
    assert result.exit_code == 0, out
    assert "strategy shared-port on lo" in out
    assert "0.0.0.0" in out and "export EPICS_CA_ADDR_LIST=127.255.255.255" in out
    for rule in ("[R4]", "[R7]", "[R11]"):
        assert rule in out
    assert "Beacons go only to 127.255.255.255" in out
