"""Cross-fleet checks (plan/neighbours.py) and the one-IOC loopback plan: pure, on made-up hosts."""

from __future__ import annotations

from hosts import LO, host, udp_holder
from orchestrator.hostmodel import HostSnapshot
from orchestrator.plan import neighbours as nb
from orchestrator.plan import planner
from orchestrator.run.backends import Member
from orchestrator.run.hostview import fleets_summary, neighbours_of, strategy_of
from orchestrator import spec


def fleet(name="new", n=1, prefix="NEW:", **network):
    iocs = [{"name": f"ioc{i}", "prefix": f"{prefix}{i}:", "pvs": [{"name": "X"}]} for i in range(n)]
    return spec.from_dict({"fleet": name, "network": {"interface": "lo", **network}, "iocs": iocs})


def lo_host(holders=()) -> HostSnapshot:
    return HostSnapshot((LO,), None, tuple(holders))


def neighbour(addr_list, pids=(100,), pvs=("OLD:0:X",), name="old", backend="docker"):
    return nb.Neighbour(name, backend, tuple(addr_list), (nb.NeighbourIOC("ioc0", "caproto", tuple(pids), pvs),))


def codes(findings):
    return sorted(f.code for f in findings)


def test_one_ioc_on_loopback_prints_the_broadcast_and_takes_no_fixed_tcp_port():
    p = planner.plan(fleet(), lo_host())
    assert p.strategy == "shared-port"
    (ioc,) = p.iocs
    assert ioc.bind == ("0.0.0.0",) and ioc.tcp_port is None
    assert p.client_env_dict()["EPICS_CA_ADDR_LIST"] == "127.255.255.255"
    assert any("even for one IOC" in d.text for d in p.decisions)


def test_one_ioc_on_a_network_interface_stays_single():
    assert planner.plan(fleet(interface="eth1"), host()).strategy == "single"


def test_two_one_ioc_fleets_on_loopback_leave_each_other_whole():
    holders = [udp_holder(address="0.0.0.0", pid=100, uid=10064, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=10064)
    old = neighbour([("127.255.255.255", 5064)])
    assert nb.check(p, lo_host(holders), (old,)) == []


def test_a_newcomer_on_the_unicast_address_a_neighbour_printed_is_refused_naming_it():
    # the neighbour is an old-style single fleet: 127.0.0.1 bound, clients told the unicast 127.0.0.1
    holders = [udp_holder(address="127.0.0.1", pid=100, uid=0, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), strategy="single", ioc_uid=0)
    found = nb.check(p, lo_host(holders), (neighbour([("127.0.0.1", 5064)]),))
    broken = [f for f in found if f.code == "neighbour-settings-broken"]
    assert broken and "fleet old" in broken[0].message and "50%" in broken[0].message
    assert "neighbour-unicast" in codes(found)  # and the newcomer's own unicast would reach it half the time


def test_a_wildcard_newcomer_next_to_a_specific_bind_breaks_nothing():
    holders = [udp_holder(address="127.0.0.1", pid=100, uid=0, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=0)  # shared-port, 0.0.0.0: unicast stays with 127.0.0.1 (R5)
    assert nb.check(p, lo_host(holders), (neighbour([("127.0.0.1", 5064)]),)) == []


def test_a_neighbour_with_a_unicast_list_on_a_wildcard_port_is_protected():
    holders = [udp_holder(address="0.0.0.0", pid=100, uid=0, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=0)
    found = nb.check(p, lo_host(holders), (neighbour([("127.0.0.1", 5064)]),))
    assert codes(found) == ["neighbour-settings-broken"]


def test_joining_a_port_held_by_another_uid_is_an_error_naming_the_fleet_and_the_newest_group_rule():
    holders = [udp_holder(address="0.0.0.0", pid=100, uid=10064, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=0)
    found = nb.check(p, lo_host(holders), (neighbour([("127.255.255.255", 5064)]),))
    (f,) = [f for f in found if f.code == "port-uid-group"]
    assert f.severity == "error" and f.rule == "R2"
    assert "fleet old" in f.message and "most recently bound" in f.message and "restarting" in f.message


def test_a_foreign_holder_of_another_uid_is_named_by_pid():
    holders = [udp_holder(address="0.0.0.0", pid=777, uid=1000, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=0)
    (f,) = nb.check(p, lo_host(holders), ())
    assert f.code == "port-uid-group" and "pid 777 (squatter)" in f.message


def test_own_pids_and_unknown_uid_are_not_findings():
    holders = [udp_holder(address="0.0.0.0", pid=100, uid=10064, reuse_ok=True)]
    p = planner.plan(fleet(), lo_host(holders), ioc_uid=0)
    assert nb.check(p, lo_host(holders), (), own_pids=frozenset({100})) == []
    assert nb.check(planner.plan(fleet(), lo_host(holders)), lo_host(holders), ()) == []  # `check`: uid unknown


def test_duplicate_pvs_name_the_other_fleet_and_a_foreign_pid():
    p = planner.plan(fleet(prefix="OLD:"), lo_host(), ioc_uid=0)
    found = nb.check(p, lo_host(), (neighbour([("127.255.255.255", 5064)], pvs=("OLD:0:X",)),),
                     answers=(nb.Answer("OLD:0:HEARTBEAT", ("127.0.0.1", 40000), 555, "softIoc"),
                              nb.Answer("OLD:0:X", ("127.0.0.1", 40001), 9, None)),
                     own_pids=frozenset({9}))
    dups = sorted(f.message for f in found if f.code == "duplicate-pv")
    assert len(dups) == 2
    assert any("fleet old" in m and "OLD:0:X" in m for m in dups)
    assert any("pid 555 (softIoc)" in m and "OLD:0:HEARTBEAT" in m for m in dups)


def test_the_same_fleet_is_never_its_own_neighbour():
    holders = [udp_holder(address="0.0.0.0", pid=100, uid=10064, reuse_ok=True)]
    p = planner.plan(fleet(name="old", prefix="OLD:"), lo_host(holders), ioc_uid=10064)
    assert nb.check(p, lo_host(holders), (neighbour([("127.0.0.1", 5064)]),)) == []


def member(fleet, name, env, backend="process", state="running", role="ioc", pid=None):
    return Member(backend, fleet, name, role, "caproto", state, pid, None, env)


def test_neighbours_and_ls_rows_are_read_back_from_the_iocs_environment():
    env = {"EPICS_CA_ADDR_LIST": "127.255.255.255", "EPICS_CA_SERVER_PORT": "5070",
           "EPICS_CAS_SERVER_PORT": "5070", "EPICS_CAS_INTF_ADDR_LIST": "0.0.0.0",
           "IOCFLEET_IOC": '{"name":"a","prefix":"P:","pvs":[{"name":"X"}]}'}
    found = [member("f", "a", env), member("f", "b", env, state="exited"), member("f", "ca-repeater", {}, role="repeater")]
    (n,) = neighbours_of(found)
    assert n.addr_list == (("127.255.255.255", 5070),)
    assert n.iocs[0].pvs == ("P:X", "P:HEARTBEAT", "P:UPTIME")
    (row,) = fleets_summary(found, lo_host())
    assert (row.fleet, row.backend, row.strategy, row.interface, row.udp_ports, row.iocs) == \
        ("f", "process", "shared-port", "lo", (5070,), 2)
    assert row.states == {"running": 1, "exited": 1}
    assert strategy_of({"EPICS_CA_ADDR_LIST": "127.0.0.1:5064 127.0.0.1:5066"}, 2) == "distinct-ports"
    assert strategy_of({"EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1"}, 1) == "single"


def test_cross_fleet_errors_come_first_and_replace_the_uid_warning_they_cover():
    from orchestrator.plan import onhost
    from orchestrator.plan.model import Finding

    mine = Finding("neighbour-settings-broken", "error", "fleet old ...", "fix", "R3", ("fleet old",))
    uid = Finding("port-uid-group", "error", "uid", "fix", "R2", ("fleet old", "100"))
    local = [Finding("tcp-port-clash", "error", "tcp", "fix", "R9"),
             Finding("reuseport-uid-mismatch", "warning", "w", "fix", "R2", ("100",)),
             Finding("repeater-missing", "info", "i", "fix", "R12")]
    out = onhost._with_neighbours(local, [mine, uid])  # run.hostview.neighbour_findings' answer, injected
    assert [f.code for f in out] == ["neighbour-settings-broken", "port-uid-group", "tcp-port-clash",
                                     "repeater-missing"]


def test_ls_text_shortens_port_ranges_and_long_client_lists_and_names_the_repeater_provider():
    from orchestrator.render import host_view_text
    from orchestrator.run.hostview import FleetRow, ForeignServer, HostView

    rows = (FleetRow("many", "process", "distinct-ports", "lo", tuple(range(5070, 5090)),
                     " ".join(f"127.0.0.1:{p}" for p in range(5070, 5090)), 20, {"running": 20}),)
    foreign = (ForeignServer("udp", "0.0.0.0", 5064, 77, 1000, "softIoc", None),)
    text = host_view_text(HostView(rows, foreign, {"port": 5065, "held": True, "provider": "iocfleet", "pid": 9,
                                                   "process": "python", "backend": "docker", "started_by": "many"}))
    assert "5070-5089" in text and "127.0.0.1:5070 127.0.0.1:5071 …(+18)" in text
    assert "softIoc" in text and "1000" in text
    assert "iocfleet's, started for fleet many (docker, pid 9)" in text
    empty = host_view_text(HostView((), (), {"port": 5065, "held": False, "provider": None, "pid": None,
                                             "process": None, "backend": None, "started_by": None}))
    assert empty.startswith("no fleets on this host") and "nobody holds it" in empty


def test_a_same_named_pv_on_another_port_is_not_a_duplicate_for_this_fleets_clients():
    p = planner.plan(fleet(prefix="OLD:", base_port=5070), lo_host(), ioc_uid=0)
    other_port = nb.Neighbour("old", "docker", (("127.255.255.255", 5064),),
                              (nb.NeighbourIOC("ioc0", "caproto", (100,), ("OLD:0:X",), 5064),))
    same_port = nb.Neighbour("old", "docker", (("127.255.255.255", 5070),),
                             (nb.NeighbourIOC("ioc0", "caproto", (100,), ("OLD:0:X",), 5070),))
    assert nb.check(p, lo_host(), (other_port,)) == []
    (f,) = nb.check(p, lo_host(), (same_port,))
    assert f.code == "duplicate-pv" and "on UDP 5070" in f.message and "fleet old" in f.message
