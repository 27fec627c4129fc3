"""The lab fixtures: namespaces, veths and broadcast exist while in use and are gone afterwards."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from labnet import ip, make_lab, start_process, used_networks

pytestmark = pytest.mark.netns


def addr_show(ns: str | None, dev: str) -> str:
    return ip(*(["-n", ns] if ns else []), "-4", "addr", "show", "dev", dev, check=False).stdout


def test_lab_has_a_veth_with_broadcast_into_a_fresh_namespace(lab):
    assert lab.ns in ip("netns", "list").stdout
    inside = addr_show(lab.ns, lab.ns_veth)
    assert f"inet {lab.ns_addr}/{lab.prefixlen} brd {lab.broadcast}" in inside
    assert f"inet {lab.peer_addr}/{lab.prefixlen} brd {lab.broadcast}" in addr_show(None, lab.peer_veth)
    assert "UP" in ip("-n", lab.ns, "link", "show", "lo").stdout
    assert len(lab.ns_veth) <= 15 and len(lab.peer_veth) <= 15
    # the subnet is ours alone: exactly one root route covers it, through our veth
    routes = [line for line in ip("-4", "route").stdout.splitlines() if line.startswith(lab.subnet)]
    assert routes == [r for r in routes if lab.peer_veth in r] and len(routes) == 1


def test_lab_is_gone_after_use_even_when_the_body_fails():
    with pytest.raises(RuntimeError):
        with make_lab() as made:
            proc = start_process(made, "ns", [sys.executable, "-c", "import os,time; print('READY', os.getpid(), "
                                              "flush=True); time.sleep(600)"], {})
            assert proc.ready
            raise RuntimeError("test body failed")
    assert made.ns not in ip("netns", "list").stdout
    assert ip("link", "show", made.peer_veth, check=False).returncode != 0
    assert proc.popen.wait(timeout=10) is not None  # killed with the namespace
    assert not any(str(n) == made.subnet for n in used_networks())


def test_lab2_links_two_namespaces_and_touches_no_root_interface(lab2):
    assert lab2.peer_ns and {lab2.ns, lab2.peer_ns} <= set(ip("netns", "list").stdout.split())
    assert ip("link", "show", lab2.peer_veth, check=False).returncode != 0  # not in the root namespace
    assert f"brd {lab2.broadcast}" in addr_show(lab2.peer_ns, lab2.peer_veth)
    # a datagram to the subnet broadcast from the client namespace arrives in the IOC namespace
    rx = lab2.socket("ns")
    rx.bind(("0.0.0.0", 0))
    rx.settimeout(2)
    tx = lab2.socket("peer")
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    tx.sendto(b"hello", (lab2.broadcast, rx.getsockname()[1]))
    assert rx.recvfrom(100) == (b"hello", (lab2.peer_addr, tx.getsockname()[1]))
    rx.close()
    tx.close()


def test_sockets_are_made_inside_the_namespace(lab2):
    s = lab2.socket("ns")
    try:
        s.bind((lab2.ns_addr, 0))  # only possible where that address exists
    finally:
        s.close()
    with pytest.raises(OSError):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind((lab2.ns_addr, 0))


def test_probe_cli_runs_inside_a_namespace(lab):
    """`ip netns exec NS python -m orchestrator.ca.probe --json` against a caproto IOC in that namespace."""
    from pathlib import Path

    server = Path(__file__).parent / "servers" / "caproto_server.py"
    env = {"EPICS_CA_SERVER_PORT": "5064", "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
           "EPICS_CAS_BEACON_ADDR_LIST": lab.broadcast, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    ioc = start_process(lab, "ns", [sys.executable, str(server), "LAB:X"], env)
    try:
        assert ioc.ready
        done = subprocess.run(lab.argv([sys.executable, "-m", "orchestrator.ca.probe", "--addr", f"{lab.broadcast}:5064",
                                        "--names", "LAB:X", "LAB:missing", "--repeat", "5", "--json"]),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert {r["name"] for r in result["replies"]} == {"LAB:X"}
        assert sorted({r["round"] for r in result["replies"]}) == list(range(5))
        assert {tuple(r["server"]) for r in result["replies"]} == {(lab.ns_addr, 5064)}
    finally:
        ioc.stop()
