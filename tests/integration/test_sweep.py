"""The client-like sweep against real caproto servers in a lab namespace, with random datagram loss made
by nftables inside that namespace: retries from the same source port repair random loss on a broadcast
path, and cannot repair a unicast path in front of a shared port (R3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labnet import start_process
from orchestrator.ca import probe
from orchestrator.ca.sweep import FIXED, FRESH, sweep

pytestmark = pytest.mark.netns

SERVER = Path(__file__).parent / "servers" / "caproto_server.py"
PORT = 5064  # inside the lab namespace: nothing else is there


def nft(ns: str, script: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True,
                   capture_output=True, timeout=20)


@pytest.fixture
def three_servers(lab2):
    env = {"EPICS_CA_SERVER_PORT": str(PORT), "EPICS_CAS_INTF_ADDR_LIST": "0.0.0.0",
           "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": lab2.broadcast,
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    procs = [start_process(lab2, "ns", [sys.executable, str(SERVER), f"SWP:{i}:A", f"SWP:{i}:B"], env)
             for i in range(3)]
    try:
        assert all(p.ready for p in procs), [p.stop() for p in procs]
        yield [f"SWP:{i}:{x}" for i in range(3) for x in "AB"]
    finally:
        for p in procs:
            p.stop()


def test_retries_repair_random_loss_on_a_broadcast_path(lab2, three_servers):
    # 20% of the search datagrams arriving at the IOC host are dropped at random
    nft(lab2.ns, f"table inet lossy {{\n chain input {{\n  type filter hook input priority 0;\n"
                 f"  udp dport {PORT} numgen random mod 10 < 2 drop\n }}\n}}\n")
    dest = (lab2.broadcast, PORT)
    retries = 0
    for _ in range(6):  # 30+ datagrams: some loss is all but certain (0.8**30 = 0.001)
        result = sweep(three_servers, [dest], fresh=3, fixed_rounds=2, socket_factory=lab2.socket_factory("peer"))
        assert result.complete, result.missing()[:5]
        assert result.reach(FRESH, dest) == 1.0 and result.reach(FIXED, dest) == 1.0
        assert len(result.servers(FIXED, dest)) == 3  # one fixed port hears all three IOCs
        assert len({r.source_port for r in result.kind_rounds(FIXED)}) == 1
        assert len({r.source_port for r in result.kind_rounds(FRESH)}) == 3
        retries += result.retries_sent
    assert retries > 0  # there was loss, and retries from the same ports repaired it


def test_a_fixed_port_behind_unicast_is_stuck_with_one_ioc_and_retries_do_not_help(lab2, three_servers):
    dest = (lab2.ns_addr, PORT)
    factory = lab2.socket_factory("peer")
    # what the old fresh-port readiness saw: over 40 rounds every IOC answered every name at least once
    # (a miss has probability 3 * (2/3)**40 = 3e-7)
    old = probe.search(three_servers, [dest], rounds=40, timeout=1.0, socket_factory=factory)
    assert all(old.rounds_answered(n, dest) >= 1 for n in three_servers)
    result = sweep(three_servers, [dest], fresh=3, fixed_rounds=2, socket_factory=factory)
    assert not result.complete and result.retries_sent > 0
    fixed_servers = result.servers(FIXED, dest)
    assert len(fixed_servers) == 1  # the reuseport hash of one 4-tuple picks one socket, every time
    assert abs(result.reach(FIXED, dest) - 1 / 3) < 1e-9
    for r in result.rounds:  # every round, fresh or fixed, reached exactly one IOC's two names
        assert sum((r.index, dest, n) in result.answers for n in three_servers) == 2
