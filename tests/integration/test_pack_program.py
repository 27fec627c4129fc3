"""The pack program on loopback: members stay network-identical to IOCs running alone.

Real servers (one `ioc.py` running a pack, and caproto's own server unpacked) and real searches
(orchestrator.ca.probe, caproto and pyepics clients) on 127.0.0.1 and 127.255.255.255 only. A reply is
attributed to its member by the PV name it answers (each member serves its own `T:<name>`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.ca import probe
from packs import PROGRAM, member, pack_env
from ports import free_port

SERVERS = Path(__file__).parent / "servers"
LO, LOBCAST = "127.0.0.1", "127.255.255.255"
SHARE_ROUNDS, SHARE_BATCH, SHARE_Z = 720, 240, 4.5
SERVING = re.compile(r"^\[(\S+)\] iocfleet-ioc\[caproto\]: serving .* bound \[(.*?)\]")


def ca_env(port: int, intf: str = "0.0.0.0") -> dict[str, str]:
    """A member's (or unpacked server's) EPICS_* settings: loopback only, beacons to loopback broadcast."""
    return {"EPICS_CA_SERVER_PORT": str(port), "EPICS_CAS_INTF_ADDR_LIST": intf,
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": LOBCAST,
            "EPICS_CAS_BEACON_PORT": str(port + 1),
            "EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": LOBCAST}


class Running:
    """A started program, its output collected by a thread; `lines` grows as it prints."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count}x {pattern!r}; output:\n" + "\n".join(self.lines[-40:]))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.reader.join(5)
        return code


def start_pack(name: str, members: list[dict]) -> Running:
    run = Running([sys.executable, str(PROGRAM)], pack_env(name, members))
    try:
        run.wait_for(r"\] iocfleet-ioc\[caproto\]: serving", len(members))
    except AssertionError:
        run.stop()
        raise
    return run


def start_unpacked(pv_names: list[str], env: dict[str, str]) -> Running:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    full.update(env, PYTHONUNBUFFERED="1")
    run = Running([sys.executable, str(SERVERS / "caproto_server.py"), *pv_names], full)
    run.wait_for("^READY")
    return run


@pytest.fixture
def port():
    return free_port(35000, 35998, LO, with_next=True)


@pytest.fixture
def pack3(port):
    run = start_pack("p3", [member(m, ca_env(port), [f"T:{m}", "T:shared"]) for m in "abc"])
    yield run, port
    assert run.stop() == 0


def counts(names: list[str], dest: tuple[str, int], rounds: int) -> tuple[dict[str, int], list[int]]:
    """Per member: in how many rounds it answered; and how many members answered each round."""
    per_round: dict[int, set[str]] = {}
    for b in range(rounds // SHARE_BATCH if rounds >= SHARE_BATCH else 1):
        batch = min(rounds, SHARE_BATCH)
        res = probe.search(names, [dest], rounds=batch, timeout=1.0)
        for rep in res.replies:
            if rep.name in names:
                per_round.setdefault(b * batch + rep.round, set()).add(rep.name)
    total = {n: sum(n in got for got in per_round.values()) for n in names}
    return total, [len(per_round.get(r, ())) for r in range(rounds)]


def test_members_log_their_own_sockets_with_their_name(pack3):
    run, port = pack3
    serving = {m.group(1): m.group(2) for m in map(SERVING.match, run.lines) if m}
    assert sorted(serving) == ["a", "b", "c"]
    assert run.lines[0] == "[pack p3] starting 3 IOCs"
    tcp_ports = set()
    for name, sockets in serving.items():
        udp = [s for s in sockets.split(", ") if s.startswith("udp")]
        tcp = [s for s in sockets.split(", ") if s.startswith("tcp")]
        assert udp == [f"udp 0.0.0.0:{port}"] and len(tcp) == 1, sockets  # its own, not the process's
        tcp_ports.add(tcp[0])
    assert len(tcp_ports) == 3


def test_broadcast_reaches_every_member_once(pack3):
    _, port = pack3
    res = probe.search(["T:a", "T:b", "T:c", "T:shared"], [(LOBCAST, port)], rounds=30, timeout=1.0)
    per = {n: sum(r.name == n for r in res.replies) for n in ("T:a", "T:b", "T:c", "T:shared")}
    assert per == {"T:a": 30, "T:b": 30, "T:c": 30, "T:shared": 90}
    assert len({r.tcp_port for r in res.replies if r.name == "T:shared"}) == 3


@pytest.mark.slow
def test_unicast_reaches_one_member_per_search_each_a_third(pack3):
    _, port = pack3
    total, per_round = counts(["T:a", "T:b", "T:c"], (LO, port), SHARE_ROUNDS)
    assert set(per_round) == {1}, "every unicast search reaches exactly one member"
    lo, hi = probe.binomial_band(SHARE_ROUNDS, 1 / 3, z=SHARE_Z)
    assert all(lo <= k <= hi for k in total.values()), total


@pytest.mark.slow
def test_packed_and_unpacked_servers_share_a_port(port):
    pk = start_pack("p2", [member(m, ca_env(port), [f"T:{m}"]) for m in "ab"])
    alone = start_unpacked(["T:u"], ca_env(port))
    try:
        names = ["T:a", "T:b", "T:u"]
        res = probe.search(names, [(LOBCAST, port)], rounds=20, timeout=1.0)
        assert {n: sum(r.name == n for r in res.replies) for n in names} == {n: 20 for n in names}
        total, per_round = counts(names, (LO, port), SHARE_ROUNDS)
        assert set(per_round) == {1}
        lo, hi = probe.binomial_band(SHARE_ROUNDS, 1 / 3, z=SHARE_Z)
        assert all(lo <= k <= hi for k in total.values()), total
    finally:
        alone.stop()
        assert pk.stop() == 0


@pytest.mark.slow
def test_one_packed_member_and_one_unpacked_server_split_unicast_in_half(port):
    other = free_port(36000, 36998, LO, with_next=True)
    pk = start_pack("p1", [member("a", ca_env(port), ["T:a"]), member("z", ca_env(other), ["T:z"])])
    alone = start_unpacked(["T:u"], ca_env(port))
    try:
        total, per_round = counts(["T:a", "T:u"], (LO, port), SHARE_ROUNDS)
        assert set(per_round) == {1}
        lo, hi = probe.binomial_band(SHARE_ROUNDS, 1 / 2, z=SHARE_Z)
        assert all(lo <= k <= hi for k in total.values()), total
    finally:
        alone.stop()
        assert pk.stop() == 0


def client_env(addr_list: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update({"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": addr_list,
                "EPICS_CA_SERVER_PORT": str(port)})
    return env


PYEPICS_READ_ALL = ("import sys, epics\n"
                    "values = [epics.caget(n, timeout=5) for n in sys.argv[1:]]\n"
                    "print(values)\n"
                    "sys.exit(any(v is None for v in values))\n")


def test_pyepics_reads_every_member_by_broadcast(port):
    """libca: one client, one fixed source port; broadcast searches must reach every member."""
    run = start_pack("p5", [member(f"m{i}", ca_env(port), ["A", "B"], prefix=f"P5{i}:") for i in range(5)])
    try:
        names = [f"P5{i}:{pv}" for i in range(5) for pv in ("A", "B", "HEARTBEAT")]
        done = subprocess.run([sys.executable, "-c", PYEPICS_READ_ALL, *names], env=client_env(LOBCAST, port),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr[-800:]
    finally:
        assert run.stop() == 0


def test_distinct_ports_and_host_port_entries(port):
    second = free_port(36000, 36998, LO, with_next=True)
    run = start_pack("pd", [member("a", ca_env(port), ["T:a"]), member("b", ca_env(second), ["T:b"])])
    try:
        res = probe.search(["T:a", "T:b"], [(LO, port), (LO, second)], rounds=20, timeout=1.0)
        assert {(r.name, r.destination[1]) for r in res.replies} == {("T:a", port), ("T:b", second)}
        assert len(res.replies) == 40
        for client in ("import sys, caproto.sync.client as c; [c.read(n, timeout=3, repeater=False) "
                       "for n in sys.argv[1:]]", PYEPICS_READ_ALL):
            done = subprocess.run([sys.executable, "-c", client, "T:a", "T:b"],
                                  env=client_env(f"{LO}:{port} {LO}:{second}", 5064),
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stdout + done.stderr[-800:]
    finally:
        assert run.stop() == 0


def test_a_crashing_member_ends_the_pack_non_zero(port):
    """A member whose server cannot bind (an address this host does not have) takes the pack down."""
    members = [member("fine", ca_env(port), ["T:fine"]), member("doomed", ca_env(port, "203.0.113.7"), ["T:d"])]
    run = Running([sys.executable, str(PROGRAM)], pack_env("pc", members))
    code = run.proc.wait(30)
    run.reader.join(5)
    assert code == 1, run.lines
    assert any(line.startswith("[doomed] crashed: ") for line in run.lines), run.lines
    assert any(line.startswith("[pack pc] stopped: a member crashed") for line in run.lines), run.lines


def test_sigterm_stops_every_member_and_exits_0(pack3):
    run, port = pack3
    assert run.stop() == 0
    assert run.lines[-1].startswith("[pack p3] stopped after")
    assert probe.search(["T:a"], [(LO, port)], rounds=1, timeout=0.3).replies == ()
