"""Multi-host plans: each declared host planned from its address, this machine on the live snapshot."""

from __future__ import annotations

import pytest

from hosts import host
from orchestrator.plan import multihost
from orchestrator import spec
from orchestrator.errors import UsageError


def fleet(hosts, iocs, **network):
    return spec.from_dict({"fleet": "mh", "network": {"base_port": 29520, **network}, "hosts": hosts, "iocs": iocs})


A = {"name": "node-a", "interface": "eth1", "address": "10.0.1.5/24"}
B = {"name": "node-b", "address": "10.0.2.6/24"}


def ioc(name, where=None, **extra):
    data = {"name": name, "runtime": "caproto", "prefix": f"MH:{name}:", **extra}
    if where:
        data["host"] = where
    return data


def test_declared_snapshot_is_one_broadcast_capable_interface_with_the_default_route():
    snap = multihost.declared_snapshot(spec.HostSpec("n", "eth1", "10.0.1.5/24"))
    assert snap.default_interface == "eth1"
    (iface,) = snap.interfaces
    assert iface.addresses() == ("10.0.1.5",) and iface.broadcasts() == ("10.0.1.255",)
    assert multihost.declared_snapshot(spec.HostSpec("n", "auto", "10.0.1.5/24")).default_interface == "default"


def test_each_host_is_planned_on_its_own_address():
    f = fleet([A, B], [ioc("a1", "node-a"), ioc("a2", "node-a"), ioc("b1", "node-b")])
    plans = multihost.plan_hosts(f, host())
    assert list(plans) == ["node-a", "node-b"]
    a, b = plans["node-a"], plans["node-b"]
    assert (a.strategy, a.interface, a.address, a.broadcast) == ("shared-port", "eth1", "10.0.1.5", "10.0.1.255")
    assert (b.strategy, b.address) == ("single", "10.0.2.6")
    assert [i.name for i in a.iocs] == ["a1", "a2"] and [i.name for i in b.iocs] == ["b1"]
    for plan in plans.values():
        for planned in plan.iocs:
            env = planned.env_dict()
            assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
            assert env["EPICS_CAS_BEACON_ADDR_LIST"] in ("10.0.1.255", "10.0.2.255", "10.0.2.6")


def test_iocs_without_host_run_here_on_the_live_snapshot():
    f = fleet([A], [ioc("here1"), ioc("here2"), ioc("a1", "node-a")], interface="lo")
    plans = multihost.plan_hosts(f, host(), local_name="vm")
    assert list(plans) == ["vm", "node-a"]
    assert plans["vm"].interface == "lo" and plans["vm"].client_env_dict()["EPICS_CA_ADDR_LIST"] == "127.255.255.255"


def test_a_host_without_address_is_this_machine_and_its_interface_applies():
    here = {"name": "here", "interface": "lo"}
    f = fleet([here, A], [ioc("h1", "here"), ioc("h2"), ioc("a1", "node-a")])
    plans = multihost.plan_hosts(f, host())
    assert list(plans) == ["here", "node-a"]
    assert plans["here"].interface == "lo"
    assert [i.name for i in plans["here"].iocs] == ["h1", "h2"]


def test_two_addressless_hosts_with_iocs_are_refused():
    f = fleet([{"name": "x"}, {"name": "y"}], [ioc("a", "x"), ioc("b", "y")])
    with pytest.raises(UsageError, match="this machine"):
        multihost.plan_hosts(f, host())


def test_merged_client_settings_reach_every_host():
    f = fleet([A, B], [ioc("a1", "node-a"), ioc("a2", "node-a"), ioc("b1", "node-b"), ioc("b2", "node-b")])
    env = dict(multihost.client_env(multihost.plan_hosts(f, host())))
    assert env == {"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "10.0.1.255 10.0.2.255",
                   "EPICS_CA_SERVER_PORT": "29520"}


def test_routed_clients_get_every_host_port_pair():
    f = fleet([A, B], [ioc("a1", "node-a"), ioc("a2", "node-a"), ioc("b1", "node-b"), ioc("b2", "node-b")],
              clients="routed")
    env = dict(multihost.client_env(multihost.plan_hosts(f, host())))
    assert env["EPICS_CA_ADDR_LIST"] == "10.0.1.5:29520 10.0.1.5:29521 10.0.2.6:29520 10.0.2.6:29521"
    assert "EPICS_CA_SERVER_PORT" not in env


def test_hosts_without_iocs_get_no_plan():
    f = fleet([A, B], [ioc("a1", "node-a")])
    assert list(multihost.plan_hosts(f, host())) == ["node-a"]
