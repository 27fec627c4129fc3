"""probe.py without a network: request bytes, reply parsing, reach statistics, and a loopback fake."""

from __future__ import annotations

import caproto as ca
import pytest

from orchestrator.ca import probe
from orchestrator.errors import UsageError


def test_search_datagram_is_a_version_request_and_one_search_per_name():
    data = probe.search_datagram(["A", "B:C"], round_=3, dest_index=1)
    cmds = ca.Broadcaster(our_role=ca.SERVER).recv(data, ("127.0.0.1", 5))
    assert isinstance(cmds[0], ca.VersionRequest)
    assert [(c.name, probe.decode_cid(c.cid)) for c in cmds[1:]] == [("A", (3, 1, 0)), ("B:C", (3, 1, 1))]


def test_parse_responses_reads_port_and_ip_and_ignores_garbage():
    reply = bytes(ca.VersionResponse(13)) + bytes(ca.SearchResponse(5099, None, 7, 13)) \
        + bytes(ca.SearchResponse(6000, "10.0.0.5", 8, 13))
    assert probe.parse_responses(reply, ("10.0.0.9", 5064)) == [(7, 5099, "255.255.255.255"), (8, 6000, "10.0.0.5")]
    assert probe.parse_responses(b"\x00\xff" + b"\x00" * 14, ("1.2.3.4", 1)) == []
    assert probe.parse_responses(b"abc", ("1.2.3.4", 1)) == []


def test_reply_server_uses_the_sender_when_ip_is_all_ones():
    r = probe.Reply("A", ("10.0.0.255", 5064), 0, ("10.0.0.9", 5064), 5099, "255.255.255.255")
    assert r.server == ("10.0.0.9", 5099)
    assert probe.Reply("A", ("x", 1), 0, ("10.0.0.9", 5064), 5099, "10.0.0.5").server == ("10.0.0.5", 5099)
    assert r.to_dict()["server"] == ["10.0.0.9", 5099]


def make_result(rounds, answers):
    """answers: list of (round, server_ip, tcp_port)."""
    dest = ("10.0.0.9", 5064)
    replies = tuple(probe.Reply("A", dest, r, (ip, 5064), port, "255.255.255.255") for r, ip, port in answers)
    return probe.ProbeResult(("A",), (dest,), rounds, replies)


def test_reach_counts_rounds_not_duplicate_replies():
    res = make_result(4, [(0, "10.0.0.9", 1), (0, "10.0.0.9", 1), (1, "10.0.0.9", 2), (2, "10.0.0.9", 1)])
    assert probe.reach(res, "A", ("10.0.0.9", 5064)) == {("10.0.0.9", 1): 0.5, ("10.0.0.9", 2): 0.25}
    assert res.rounds_answered("A", ("10.0.0.9", 5064)) == 3
    assert res.servers() == {("10.0.0.9", 1), ("10.0.0.9", 2)}
    assert res.to_dict()["rounds"] == 4


def test_binomial_band_accepts_one_in_n_and_rejects_all_or_none():
    lo, hi = probe.binomial_band(60, 1 / 3)
    assert lo <= 20 <= hi and lo > 0 and hi < 60
    assert probe.binomial_band(60, 1.0) == (60, 60)
    assert probe.binomial_band(60, 0.0) == (0, 0)


def test_search_refuses_empty_or_oversized_probes():
    with pytest.raises(UsageError):
        probe.search([], [("127.0.0.1", 1)])
    with pytest.raises(UsageError):
        probe.search(["A"], [("127.0.0.1", 1)], rounds=probe.MAX_ROUNDS + 1)


class FakeServerSocket:
    """A socket whose peer answers every search for `known` names (no network at all)."""

    known = {"A": 5099}

    def __init__(self):
        self.inbox = []

    def setsockopt(self, *args):
        pass

    def bind(self, addr):
        pass

    def setblocking(self, flag):
        pass

    def fileno(self):
        import os
        if not hasattr(self, "_pipe"):
            self._pipe = os.pipe()
        return self._pipe[0]

    def sendto(self, data, dest):
        import os
        cmds = ca.Broadcaster(our_role=ca.SERVER).recv(data, ("127.0.0.1", 1))
        out = [ca.SearchResponse(self.known[c.name], None, c.cid, 13) for c in cmds
               if isinstance(c, ca.SearchRequest) and c.name in self.known]
        if out:
            self.inbox.append((b"".join(bytes(c) for c in out), dest))
            self.fileno()
            os.write(self._pipe[1], b"x")

    def recvfrom(self, n):
        if not self.inbox:
            raise BlockingIOError
        return self.inbox.pop(0)

    def close(self):
        import os
        if hasattr(self, "_pipe"):
            os.close(self._pipe[0])
            os.close(self._pipe[1])


def test_search_collects_replies_per_round_with_an_injected_socket():
    res = probe.search(["A", "B"], [("10.1.1.1", 5064)], rounds=5, timeout=0.05, socket_factory=FakeServerSocket)
    assert [(r.name, r.round, r.server) for r in res.replies] == [("A", k, ("10.1.1.1", 5099)) for k in range(5)]
    assert probe.reach(res, "A", ("10.1.1.1", 5064)) == {("10.1.1.1", 5099): 1.0}
    assert not res.select("B") and not res.errors


def test_cli_rejects_bad_usage(capsys):
    assert probe.main(["--addr", "127.0.0.1:28999", "--names", "A", "--repeat", "100000"]) == 2
    assert "iocfleet: error" in capsys.readouterr().err


def test_search_batched_splits_names_into_datagrams_and_merges_one_result():
    names = [f"N{i}" for i in range(150)]  # three datagrams: 64 + 64 + 22 names

    class Known(FakeServerSocket):
        known = {"N0": 5001, "N70": 5002, "N149": 5003}

    res = probe.search_batched(names, [("10.1.1.1", 5064)], rounds=2, timeout=0.05, socket_factory=Known,
                               parallel=2)
    assert res.names == tuple(names) and res.rounds == 2 and res.destinations == (("10.1.1.1", 5064),)
    assert sorted((r.name, r.round, r.tcp_port) for r in res.replies) == [
        ("N0", 0, 5001), ("N0", 1, 5001), ("N149", 0, 5003), ("N149", 1, 5003), ("N70", 0, 5002), ("N70", 1, 5002)]
    one = probe.search_batched(["N0"], [("10.1.1.1", 5064)], timeout=0.05, socket_factory=Known)
    assert [r.name for r in one.replies] == ["N0"]
    with pytest.raises(UsageError):
        probe.search_batched([], [("10.1.1.1", 5064)])
