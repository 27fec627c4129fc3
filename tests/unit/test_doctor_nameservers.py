"""The doctor's judgement of name-server reports (R15): pure, on made-up reports."""

from __future__ import annotations

from hosts import host, tcp_holder
from orchestrator.doctor import nameservers as ns
from orchestrator.doctor.model import FleetIOC, FleetView


def report(connected=True, answers=(), error="", unanswered=()):
    return ns.NameServerReport("10.0.0.5:5066", ("10.0.0.5", 5066), connected, error, tuple(answers), tuple(unanswered))


def codes(reports, names=("A",)):
    return [f.code for f in ns.judge(reports, list(names))]


def test_an_entry_that_refuses_tcp_is_unreachable():
    assert codes([report(connected=False, error="refused")]) == ["name-server-unreachable"]


def test_an_entry_that_answers_nothing_is_unreachable_too():
    assert codes([report(answers=(), unanswered=("A",))]) == ["name-server-unreachable"]


def test_answers_that_point_at_a_dead_server_or_a_server_without_the_name_are_flagged():
    dead = ns.Answer("A", ("10.0.0.5", 40001), False, "connect to 10.0.0.5:40001: Connection refused")
    wrong = ns.Answer("B", ("10.0.0.5", 40002), False, "no answer before the timeout")
    good = ns.Answer("C", ("10.0.0.5", 40003), True)
    assert sorted(codes([report(answers=(dead, wrong, good))], "ABC")) == ["name-server-dead-ioc",
                                                                          "name-server-wrong-server"]
    assert codes([report(answers=(good,))], "C") == []


def test_answers_name_the_fleet_ioc_listening_on_the_port():
    snap = host(holders=(tcp_holder(40003, pid=321),))
    fleet = FleetView("f", (FleetIOC("motor", "caproto", ("C",), (321,), None, "running"),))
    owner = ns.owner_lookup(snap, fleet)
    data = report(answers=(ns.Answer("C", ("10.0.0.5", 40003), True),)).to_dict(owner)
    assert data["answers"] == [{"name": "C", "server": "10.0.0.5:40003", "ioc": "motor", "served": True,
                                "problem": ""}]
    assert owner(("10.0.0.5", 1)) is None


def test_a_fanned_out_unicast_path_is_explained_not_flagged():
    from orchestrator.doctor import fanout
    from orchestrator.doctor.model import Diagnosis, IOCReach, PathReport
    from orchestrator.ca.env import client_settings
    from orchestrator.plan.model import Finding

    path = PathReport("198.18.1.2", 5064, "unicast", (IOCReach("a", 1, None, 1.0, "198.18.1.2:5064", 0.5, 1),
                                                      IOCReach("b", 2, None, 1.0, "198.18.1.2:40000", 0.5, 1)),
                      (), None, False, 40)
    warn = Finding("prediction-mismatch", "warning", "EPICS_CA_ADDR_LIST=198.18.1.2: measured reach differs", "x")
    other = Finding("beacon-auto", "warning", "pid 7 beacons", "y")
    d = Diagnosis(client_settings({}), (warn, other), (path,), (), {"names": 2})
    out = fanout.attach(d, [("198.18.1.2", 5064, "198.18.1.255", "iocfleet_f")])
    assert out.paths[0].kind == "fan-out to 198.18.1.255" and out.paths[0].matches_prediction is None
    assert [f.code for f in out.findings] == ["beacon-auto", "fanout-active"]
    assert fanout.attach(d, []) is d
