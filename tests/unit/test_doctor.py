"""The doctor on made-up hosts and made-up probe results: findings, reach, duplicates, verdicts."""

from __future__ import annotations

import json

import pytest

from orchestrator.ca import env as caenv
from orchestrator.doctor import judge as doctor
from orchestrator.errors import EXIT_FINDINGS
from orchestrator.hostmodel import HostSnapshot, Interface, IPv4, PortHolder
from orchestrator.ca.probe import ProbeResult, Reply

HOST = "198.51.100.1"
BCAST = "198.51.100.255"
LO = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
ETH = Interface("eth1", True, False, True, True, 1500, (IPv4.from_cidr(f"{HOST}/24"),))
TCP = {101: 5064, 102: 40002, 103: 40003}
CONTAINER = "c" * 64


def udp(pid, port=5064, address="0.0.0.0", reuse=True, uid=0, container=None):
    return PortHolder("udp", port, address, pid, "python3", uid, container, reuse)


def tcp(pid, port):
    return PortHolder("tcp", port, "0.0.0.0", pid, "python3", 0, None, None)


def host(*holders, interfaces=(LO, ETH), default=None) -> HostSnapshot:
    return HostSnapshot(tuple(interfaces), default, tuple(holders))


def three_iocs(*extra) -> HostSnapshot:
    return host(*(udp(p) for p in TCP), *(tcp(p, t) for p, t in TCP.items()), udp(900, 5065), *extra)


def procs(**env) -> tuple[doctor.Process, ...]:
    safe = {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": BCAST}
    return tuple(doctor.Process(p, f"ioc{p}", "caproto", 0, None, float(p), tuple((safe | env).items()))
                 for p in TCP)


def client(addr_list: str, auto="NO") -> caenv.ClientSettings:
    return caenv.client_settings({"EPICS_CA_ADDR_LIST": addr_list, "EPICS_CA_AUTO_ADDR_LIST": auto})


def replies(dest, answers, src=HOST):
    """Replies for {(round, name): [pid, ...]} at `dest`, each from the pid's TCP port."""
    return [Reply(name, dest, rnd, (src, 5064), TCP[pid], "255.255.255.255")
            for (rnd, name), pids in answers.items() for pid in pids]


def observe(addr_list, snapshot, answers_by_dest, names=("A", "B", "C"), rounds=30, processes=None, **kw):
    settings = client(addr_list)
    dests = tuple((e.host, e.port) for e in settings.entries)
    reps = tuple(r for d in dests for r in replies(d, answers_by_dest.get(d, {})))
    result = ProbeResult(tuple(names), dests, rounds, reps)
    return doctor.Observation(settings, snapshot, dests, procs() if processes is None else processes, result, **kw)


NAME_OF = {101: "A", 102: "B", 103: "C"}


def unicast_answers(rounds=30):
    """Each round one IOC (in turn) gets the datagram and answers its own name (R3)."""
    order = list(TCP)
    return {(r, NAME_OF[order[r % 3]]): [order[r % 3]] for r in range(rounds)}


def broadcast_answers(rounds=30, skip=()):
    return {(r, NAME_OF[p]): [p] for r in range(rounds) for p in TCP if (r, p) not in skip}


def test_unicast_to_shared_port_is_an_error_with_measured_reach_and_a_fix():
    d = doctor.diagnose(observe(HOST, three_iocs(), {(HOST, 5064): unicast_answers()}))
    f = next(f for f in d.findings if f.code == "unicast-addr-list-multi-ioc")
    assert f.severity == "error" and f.rule == "R3"
    assert f"EPICS_CA_ADDR_LIST={HOST} is the unicast address of this host, where 3 IOCs share UDP 5064" in f.message
    assert "measured 0.33, 0.33, 0.33" in f.message
    assert f.fix.startswith(f"Use EPICS_CA_ADDR_LIST={BCAST} (the subnet broadcast, which every IOC hears), "
                            "or run the fleet with `--strategy distinct-ports`")
    (path,) = d.paths
    assert path.kind == "unicast" and path.predicted.kind == "one-of" and path.matches_prediction is True
    assert [round(i.reach, 2) for i in path.iocs] == [0.33, 0.33, 0.33]
    assert d.has_errors and d.verdict.startswith("NOT OK: EPICS_CA_ADDR_LIST=")
    with pytest.raises(doctor.FindingsError) as caught:
        d.raise_for_errors()
    assert caught.value.exit_code == EXIT_FINDINGS


def test_broadcast_reaches_all_and_matches_exactly():
    d = doctor.diagnose(observe(BCAST, three_iocs(), {(BCAST, 5064): broadcast_answers()}))
    assert not d.has_errors, d.findings
    (path,) = d.paths
    assert path.kind == "broadcast" and path.matches_prediction is True
    assert [i.reach for i in path.iocs] == [1.0, 1.0, 1.0] and path.duplicates == ()
    d.raise_for_errors()  # no error: no exception


def test_a_missed_broadcast_round_is_a_prediction_mismatch():
    d = doctor.diagnose(observe(BCAST, three_iocs(), {(BCAST, 5064): broadcast_answers(skip={(4, 102)})}))
    assert d.paths[0].matches_prediction is False
    assert "prediction-mismatch" in {f.code for f in d.findings}


def test_unicast_next_to_a_broadcast_entry_is_only_info():
    answers = {(HOST, 5064): unicast_answers(), (BCAST, 5064): broadcast_answers()}
    d = doctor.diagnose(observe(f"{HOST} {BCAST}", three_iocs(), answers))
    f = next(f for f in d.findings if f.code == "unicast-addr-list-multi-ioc")
    assert f.severity == "info" and "another entry of the list reaches all of them" in f.message
    assert not d.has_errors
    assert "same-ioc-two-paths" in {f.code for f in d.findings}  # same pids via two paths: not duplicates
    assert "duplicate-pv" not in {f.code for f in d.findings}


def test_two_servers_for_one_name_is_a_duplicate_with_both_pids():
    answers = {(r, "A"): [101, 102] for r in range(5)} | {(r, "B"): [102] for r in range(5)}
    d = doctor.diagnose(observe(BCAST, three_iocs(), {(BCAST, 5064): answers}, names=("A", "B"), rounds=5))
    dup = next(f for f in d.findings if f.code == "duplicate-pv")
    assert dup.subjects == ("101", "102") and "PV A is served by 2 different IOCs" in dup.message
    assert d.paths[0].duplicates[0]["name"] == "A"
    assert {s["pid"] for s in d.paths[0].duplicates[0]["servers"]} == {101, 102}


def test_remote_host_is_judged_by_measurement_alone():
    remote = "203.0.113.7"
    snap = host(interfaces=(LO, ETH), default="eth1")
    reps = tuple(Reply(NAME_OF[p], (remote, 5064), r, (remote, 5064), TCP[p], "255.255.255.255")
                 for r in range(30) for p in [list(TCP)[r % 3]])
    settings = client(remote)
    obs = doctor.Observation(settings, snap, ((remote, 5064),), (),
                             ProbeResult(("A", "B", "C"), ((remote, 5064),), 30, reps))
    d = doctor.diagnose(obs)
    (path,) = d.paths
    assert path.kind == "remote" and path.predicted is None and path.matches_prediction is None
    assert [i.pid for i in path.iocs] == [None, None, None]
    f = next(f for f in d.findings if f.code == "unicast-addr-list-multi-ioc")
    assert f.severity == "error" and "of that host" in f.message


def test_port_held_without_reuse_names_the_pid():
    snap = host(PortHolder("udp", 5064, "0.0.0.0", 4242, "nc", 1000, None, False), udp(900, 5065))
    d = doctor.diagnose(observe(BCAST, snap, {}, processes=()))
    f = next(f for f in d.findings if f.code == "port-held-without-reuse")
    assert f.subjects == ("4242",) and "pid 4242 (nc, uid 1000)" in f.message
    assert "no-reply" in {f.code for f in d.findings} and "pv-not-found" in {f.code for f in d.findings}


def test_repeater_missing_and_in_an_ioc_container():
    bare = host(*(udp(p) for p in TCP))
    assert "repeater-missing" in {f.code for f in doctor.diagnose(observe(BCAST, bare, {})).findings}
    boxed = host(udp(101, container=CONTAINER), udp(102), udp(555, 5065, container=CONTAINER))
    f = next(f for f in doctor.diagnose(observe(BCAST, boxed, {})).findings if f.code == "repeater-in-ioc-container")
    assert f.subjects == ("555", CONTAINER)


def test_beacon_auto_from_the_process_environment():
    loud = procs(EPICS_CAS_AUTO_BEACON_ADDR_LIST="YES")
    d = doctor.diagnose(observe(BCAST, three_iocs(), {(BCAST, 5064): broadcast_answers()}, processes=loud))
    assert sorted(f.subjects for f in d.findings if f.code == "beacon-auto") == [("101",), ("102",), ("103",)]
    unknown = tuple(doctor.Process(p, "x", "caproto", 0, None, 0.0, None) for p in TCP)
    d = doctor.diagnose(observe(BCAST, three_iocs(), {}, processes=unknown))
    assert "beacon-auto" not in {f.code for f in d.findings} and any("environment" in n for n in d.notes)


def test_address_list_entries_against_the_interfaces():
    down = Interface("eth2", False, False, True, True, 1500, (IPv4.from_cidr("192.0.2.9/24"),))
    snap = host(udp(900, 5065), interfaces=(LO, ETH, down))
    d = doctor.diagnose(doctor.Observation(client("203.0.113.7 192.0.2.255"), snap))
    by = {(f.code, f.severity) for f in d.findings}
    assert ("addr-list-unreachable", "error") in by and ("interface-down", "error") in by
    routed = host(udp(900, 5065), default="eth1")
    assert "addr-list-unreachable" not in {f.code for f in doctor.diagnose(
        doctor.Observation(client("203.0.113.7"), routed)).findings}
    empty = doctor.diagnose(doctor.Observation(client(""), snap))
    assert "addr-list-empty" in {f.code for f in empty.findings}


def test_auto_addr_list_warns_and_says_what_was_not_probed():
    d = doctor.diagnose(doctor.Observation(client(BCAST, auto="YES"), three_iocs()))
    f = next(f for f in d.findings if f.code == "auto-addr-list")
    assert f.severity == "warning" and BCAST in f.message and "--probe-auto" in f.message


def test_json_keys_are_stable_and_text_has_the_verdict():
    d = doctor.diagnose(observe(HOST, three_iocs(), {(HOST, 5064): unicast_answers()}))
    data = json.loads(json.dumps(d.to_dict()))
    assert {"findings", "paths", "verdict", "client", "ports", "probe", "notes"} <= set(data)
    assert {"code", "severity", "message", "fix"} <= set(data["findings"][0])
    path = data["paths"][0]
    assert {"address", "port", "iocs", "duplicates", "predicted", "matches_prediction"} <= set(path)
    assert {"name", "pid", "container", "reach"} <= set(path["iocs"][0])
    assert isinstance(path["matches_prediction"], bool)
    out = doctor.text(d)
    assert "verdict: NOT OK" in out and "unicast-addr-list-multi-ioc" in out and f"path {HOST}:5064" in out


def test_an_ioc_that_never_answers_a_unicast_share_does_not_match():
    answers = {(r, NAME_OF[p]): [p] for r in range(30) for p in [101 if r % 2 else 102]}
    both = {(HOST, 5064): answers, (BCAST, 5064): broadcast_answers()}  # the broadcast tells C is 103's
    d = doctor.diagnose(observe(f"{HOST} {BCAST}", three_iocs(), both))
    assert d.paths[0].matches_prediction is False  # 103 predicted 1/3, answered 0 of 30
    assert d.paths[1].matches_prediction is True
    assert "prediction-mismatch" in {f.code for f in d.findings}
