"""`iocfleet interfaces` against the real kernel: loopback, a lab veth, and who holds UDP 5064."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labnet import start_process

pytestmark = pytest.mark.netns

# Hold UDP 5064 with a plain socket (no SO_REUSEADDR/SO_REUSEPORT), say READY, wait to be killed.
PLAIN_HOLDER = (
    "import os, socket, sys, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind(('0.0.0.0', 5064))\n"
    "print('READY', os.getpid(), flush=True)\n"
    "time.sleep(120)\n"
)

# A caproto server on 5064 (caproto binds with SO_REUSEADDR|SO_REUSEPORT).
CAPROTO_SERVER = (
    "import os, asyncio\n"
    "from caproto.server import PVGroup, pvproperty, run\n"
    "class G(PVGroup):\n"
    "    x = pvproperty(value=1.0)\n"
    "async def ready(async_lib):\n"
    "    print('READY', os.getpid(), flush=True)\n"
    "run(G(prefix='HOSTTEST:').pvdb, interfaces=['0.0.0.0'], log_pv_names=False, startup_hook=ready)\n"
)


def interfaces_json(argv_prefix=()) -> dict:
    proc = subprocess.run([*argv_prefix, sys.executable, "-m", "orchestrator.cli", "interfaces", "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(proc.stdout)


def server_env(lab) -> dict[str, str]:
    return {"EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": lab.broadcast,
            "EPICS_CAS_INTF_ADDR_LIST": "0.0.0.0", "EPICS_CA_SERVER_PORT": "5064", "PATH": "/usr/bin:/bin"}


def test_interfaces_lists_loopback_and_the_lab_veth_with_its_broadcast(lab):
    data = interfaces_json()
    assert set(data) == {"interfaces", "default_interface", "ca_ports"}
    by_name = {i["name"]: i for i in data["interfaces"]}
    lo = by_name["lo"]
    assert lo["loopback"] and lo["up"]
    assert {"address": "127.0.0.1", "netmask": "255.0.0.0", "prefixlen": 8, "broadcast": None, "peer": None,
            "secondary": False, "label": "lo"} in lo["ipv4"]
    veth = by_name[lab.peer_veth]
    assert veth["up"] and veth["broadcast_capable"] and not veth["loopback"]
    assert veth["ipv4"] == [{"address": lab.peer_addr, "netmask": "255.255.255.0", "prefixlen": 24,
                             "broadcast": lab.broadcast, "peer": None, "secondary": False, "label": lab.peer_veth}]
    assert set(veth) == {"name", "up", "loopback", "broadcast_capable", "multicast", "mtu", "ipv4", "point_to_point"}


def test_a_plain_socket_on_5064_is_reported_with_its_pid_and_no_reuse(lab):
    holder = start_process(lab, "ns", [sys.executable, "-c", PLAIN_HOLDER], server_env(lab))
    try:
        assert holder.ready, holder.stop()
        ports = interfaces_json(["ip", "netns", "exec", lab.ns])["ca_ports"]
        mine = [p for p in ports if p["proto"] == "udp" and p["port"] == 5064 and p["pid"] == holder.pid]
        assert len(mine) == 1, ports
        assert mine[0]["reuse_ok"] is False
        assert mine[0]["process"].startswith("python") and mine[0]["uid"] == 0 and mine[0]["container"] is None
        assert set(mine[0]) == {"proto", "port", "address", "pid", "process", "uid", "container", "reuse_ok"}
    finally:
        holder.stop()


def test_a_caproto_server_on_5064_allows_reuse(lab):
    server = start_process(lab, "ns", [sys.executable, "-c", CAPROTO_SERVER], server_env(lab))
    try:
        assert server.ready, server.stop()
        ports = interfaces_json(["ip", "netns", "exec", lab.ns])["ca_ports"]
        udp = [p for p in ports if p["proto"] == "udp" and p["port"] == 5064 and p["pid"] == server.pid]
        tcp = [p for p in ports if p["proto"] == "tcp" and p["port"] == 5064 and p["pid"] == server.pid]
        assert udp and all(p["reuse_ok"] is True for p in udp), ports
        assert tcp and tcp[0]["reuse_ok"] is None
    finally:
        server.stop()


def test_check_reports_the_plain_holder_as_port_held_without_reuse(lab, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("fleet: held\nnetwork: {interface: lo}\niocs:\n"
                     "  - {name: a, prefix: 'H:A:'}\n  - {name: b, prefix: 'H:B:'}\n")
    holder = start_process(lab, "ns", [sys.executable, "-c", PLAIN_HOLDER], server_env(lab))
    try:
        assert holder.ready, holder.stop()
        proc = subprocess.run(["ip", "netns", "exec", lab.ns, sys.executable, "-m", "orchestrator.cli", "check",
                               str(fleet), "--json"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, proc.stderr
        found = [f for f in json.loads(proc.stdout)["findings"] if f["code"] == "port-held-without-reuse"]
        assert len(found) == 1 and f"pid {holder.pid}" in found[0]["message"]
    finally:
        holder.stop()
