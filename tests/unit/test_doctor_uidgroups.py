"""The doctor's uid groups on a shared port (R2): measured on a probed unicast path, predicted otherwise."""

from __future__ import annotations

from test_doctor import TCP, host, observe, tcp, udp
from orchestrator.doctor import judge as doctor


def mixed_uids():
    """101 (uid 0, started last), 102 and 103 (uid 10064) on 0.0.0.0:5064, each with its TCP port."""
    return host(udp(101, uid=0), udp(102, uid=10064), udp(103, uid=10064), *(tcp(p, t) for p, t in TCP.items()))


def test_a_probed_unicast_path_shows_the_groups_and_measured_reach_zero_for_the_older_one():
    answers = {("127.0.0.1", 5064): {(r, "A"): [101] for r in range(30)}}
    d = doctor.diagnose(observe("127.0.0.1", mixed_uids(), answers, names=("A",)))
    (f,) = [f for f in d.findings if f.code == "unicast-uid-theft"]
    assert f.severity == "error" and f.rule == "R2"
    assert "now uid 0" in f.message and "uid 0 (pid 101" in f.message
    assert "uid 10064 (pid 102" in f.message and "pid 103" in f.message
    assert "measured reach 100%" in f.message and "measured reach 0%" in f.message
    assert f.message.index("measured reach 100%") < f.message.index("uid 10064")


def test_with_only_a_broadcast_probed_the_unicast_winner_is_predicted_from_the_newest_process():
    answers = {("127.255.255.255", 5064): {(r, "A"): [101, 102, 103] for r in range(30)}}
    d = doctor.diagnose(observe("127.255.255.255", mixed_uids(), answers, names=("A",)))
    (f,) = [f for f in d.findings if f.code == "unicast-uid-theft"]
    assert f.severity == "warning"  # broadcast still reaches everyone: the settings work
    assert "predicted now uid 103" not in f.message
    assert "predicted now uid 10064" in f.message  # pid 103 has the latest start time in the made-up processes


def test_one_uid_has_no_groups_to_report():
    one = host(udp(101), udp(102), udp(103), *(tcp(p, t) for p, t in TCP.items()))
    answers = {("127.0.0.1", 5064): {(r, "A"): [101 + r % 3] for r in range(30)}}
    d = doctor.diagnose(observe("127.0.0.1", one, answers, names=("A",)))
    assert not [f for f in d.findings if f.code == "unicast-uid-theft"]
