"""Properties of the planner over generated hosts and fleets (hypothesis), checked against rules.py."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator.plan import conflicts
from orchestrator.plan import planner
from orchestrator.ca import rules
from orchestrator import spec
from orchestrator.hostmodel import HostSnapshot, Interface, IPv4

LO = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))


@st.composite
def hosts(draw) -> HostSnapshot:
    count = draw(st.integers(0, 3))
    interfaces = [LO]
    used = set()
    for i in range(count):
        net = draw(st.integers(1, 220))
        assume(net not in used and net != 127)
        used.add(net)
        prefix = draw(st.sampled_from([8, 16, 20, 24, 28, 30, 32]))
        address = ipaddress.IPv4Network(f"{net}.0.0.0/8").network_address + draw(st.integers(1, 250))
        broadcast = prefix < 31 and draw(st.booleans())
        ipv4 = IPv4.from_cidr(f"{address}/{prefix}", broadcast=broadcast)
        interfaces.append(Interface(f"eth{i}", draw(st.booleans()) or i == 0, False, broadcast,
                                    draw(st.booleans()), 1500, (ipv4,)))
    names = [i.name for i in interfaces]
    default = draw(st.sampled_from([None, *names[1:]]))
    return HostSnapshot(tuple(interfaces), default, ())


@st.composite
def fleets(draw, interface_names) -> spec.FleetSpec:
    n = draw(st.integers(1, 6))
    iocs = []
    for i in range(n):
        pvs = [{"name": f"P{j}", "type": draw(st.sampled_from(["float", "int"]))} for j in range(draw(st.integers(0, 3)))]
        iocs.append({"name": f"ioc{i}", "runtime": draw(st.sampled_from(["caproto", "softioc"])),
                     "prefix": f"G:{i}:", "replicas": draw(st.integers(1, 3)), "pvs": pvs})
    network = {
        "interface": draw(st.sampled_from(["auto", *interface_names])),
        "strategy": draw(st.sampled_from(["auto", "auto", "single", "shared-port", "distinct-ports", "name-server"])),
        "clients": draw(st.sampled_from(["auto", "same-host", "subnet", "routed"])),
        "base_port": draw(st.sampled_from([5064, 6000, 40000])),
    }
    return spec.from_dict({"fleet": "gen", "network": network, "iocs": iocs})


@st.composite
def host_and_fleet(draw):
    snap = draw(hosts())
    return snap, draw(fleets([i.name for i in snap.interfaces]))


def predicted_reach(plan, snap) -> dict[str, float]:
    sockets = [s for ioc in plan.iocs
               for s in rules.server_sockets(ioc.runtime, ioc.env_dict()["EPICS_CAS_INTF_ADDR_LIST"], ioc.udp_port,
                                             ioc.name, 10064, snap.interfaces)]
    sender = rules.LOCAL if plan.clients == "same-host" else plan.interface
    if plan.name_server is not None:  # clients reach the name server; it reaches the IOCs from this host (R15)
        return rules.reach(list(plan.name_server.search), sockets, snap.interfaces, rules.LOCAL)
    return rules.reach(conflicts.client_entries(plan), sockets, snap.interfaces, sender)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@SETTINGS
@given(host_and_fleet())
def test_beacons_are_never_automatic_and_always_explicit(case):
    snap, fleet = case
    plan = planner.plan(fleet, snap)
    for ioc in plan.iocs:
        env = ioc.env_dict()
        assert env["EPICS_CAS_AUTO_BEACON_ADDR_LIST"] == "NO"
        assert env["EPICS_CAS_BEACON_ADDR_LIST"].strip()
        assert "255.255.255.255" not in env["EPICS_CAS_BEACON_ADDR_LIST"]
        assert env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert plan.client_env_dict()["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert plan.client_env_dict()["EPICS_CA_ADDR_LIST"].strip()


@SETTINGS
@given(host_and_fleet())
def test_distinct_ports_never_share_a_tcp_or_udp_port(case):
    snap, fleet = case
    plan = planner.plan(fleet, snap, strategy="distinct-ports")
    tcp = [i.tcp_port for i in plan.iocs]
    assert len(set(tcp)) == len(tcp)
    assert len({i.udp_port for i in plan.iocs}) == len(plan.iocs)
    assert 5065 not in tcp


@SETTINGS
@given(host_and_fleet())
def test_a_plan_without_error_findings_reaches_every_ioc_per_the_rules_model(case):
    snap, fleet = case
    plan = planner.plan(fleet, snap)
    assume(not conflicts.has_errors(conflicts.check(plan, snap)))
    reach = predicted_reach(plan, snap)
    assert reach == {i.name: 1.0 for i in plan.iocs}, (plan.strategy, plan.interface, plan.client_env_dict())


@SETTINGS
@given(host_and_fleet(), st.data())
def test_check_flags_every_duplicate_pv(case, data):
    snap, fleet = case
    assume(len(fleet.iocs) >= 2)
    a, b = data.draw(st.lists(st.sampled_from(range(len(fleet.iocs))), min_size=2, max_size=2, unique=True))
    same = [ioc if k != b else spec.IOCSpec(**{**ioc.__dict__, "prefix": fleet.iocs[a].prefix,
                                                 "replicas": fleet.iocs[a].replicas})
            for k, ioc in enumerate(fleet.iocs)]
    fleet = spec.FleetSpec(fleet.name, fleet.network, tuple(same))
    plan = planner.plan(fleet, snap)
    owners: dict[str, set] = {}
    for ioc in plan.iocs:
        for pv in ioc.pv_names:
            owners.setdefault(pv, set()).add(ioc.name)
    duplicated = {pv for pv, o in owners.items() if len(o) > 1}
    assert duplicated  # at least the standard PVs of the two IOCs that now share a prefix
    flagged = {f.message.split()[1] for f in conflicts.check(plan, snap) if f.code == "duplicate-pv"}
    assert flagged == duplicated
