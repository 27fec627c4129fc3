"""`iocfleet doctor` with EPICS_CA_NAME_SERVERS (R15), against the real name server program on loopback.

A real caproto IOC serves REAL:PV. A stand-in for the IOCs' shared port answers the name server's own
discovery searches with chosen ports (a port where nothing listens for DEAD:PV, the IOC's port for
WRONG:PV, which it does not serve), so the name server really points names at a dead and a wrong
server; a second name-server entry has nothing behind it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import caproto as ca
import pytest

from orchestrator.images.build import ioc_images_root
from ports import free_port

pytestmark = [pytest.mark.slow]
SERVERS = Path(__file__).parent / "servers"


def fake_discovery(sock: socket.socket, ports: dict[str, int], stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            data, sender = sock.recvfrom(65536)
        except (socket.timeout, OSError):
            continue
        replies = [ca.VersionResponse(13)]
        for c in ca.Broadcaster(our_role=ca.SERVER).recv(data, sender):
            if isinstance(c, ca.SearchRequest) and c.name in ports:
                replies.append(ca.SearchResponse(ports[c.name], "127.0.0.1", c.cid, 13))
        sock.sendto(b"".join(bytes(r) for r in replies), sender)


def ready(popen: subprocess.Popen) -> None:
    for line in popen.stdout:
        if line.startswith("READY"):
            return
    raise AssertionError(f"exited {popen.wait()}: {popen.stderr.read()[-2000:]}")


def test_doctor_reports_where_each_name_points_and_flags_dead_wrong_and_silent_name_servers(tmp_path):
    ioc_port, ns_port, silent_port = (free_port(31000, 33000) for _ in range(3))
    dead_port = free_port(33000, 34000)
    env = {**os.environ, "EPICS_CA_SERVER_PORT": str(ioc_port), "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
           "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255"}
    ioc = subprocess.Popen([sys.executable, str(SERVERS / "caproto_server.py"), "REAL:PV"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    disco = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    disco.bind(("127.0.0.1", 0))
    stop = threading.Event()
    thread = threading.Thread(target=fake_discovery, args=(disco, {"REAL:PV": ioc_port, "WRONG:PV": ioc_port,
                                                                   "DEAD:PV": dead_port}, stop), daemon=True)
    thread.start()
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"fleet": "t", "search": [list(disco.getsockname())], "iocs": {
        "fake": {"address": "127.0.0.1", "pvs": ["REAL:PV", "WRONG:PV", "DEAD:PV"]}}}))
    program = ioc_images_root() / "common" / "iocfleet_ioc" / "nameserver.py"
    server = subprocess.Popen([sys.executable, str(program), "--names", str(names), "--port", str(ns_port),
                               "--bind", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready(ioc)
        ready(server)
        client = {"PATH": os.environ["PATH"], "EPICS_CA_AUTO_ADDR_LIST": "NO",
                  "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ns_port}",
                  "EPICS_CA_NAME_SERVERS": f"127.0.0.1:{ns_port} 127.0.0.1:{silent_port}"}
        done = subprocess.run([sys.executable, "-m", "orchestrator.doctor", "--names", "REAL:PV", "WRONG:PV",
                               "DEAD:PV", "--repeat", "3", "--json"], env=client, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 1, done.stderr  # error findings
        report = json.loads(done.stdout)
    finally:
        stop.set()
        for proc in (server, ioc):
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        disco.close()
    codes = {f["code"] for f in report["findings"]}
    assert {"name-server-dead-ioc", "name-server-wrong-server", "name-server-unreachable"} <= codes
    first, second = report["name_servers"]
    assert (first["entry"], first["connected"], second["connected"]) == (f"127.0.0.1:{ns_port}", True, False)
    answers = {a["name"]: a for a in first["answers"]}
    assert answers["REAL:PV"]["server"] == f"127.0.0.1:{ioc_port}" and answers["REAL:PV"]["served"] is True
    assert answers["DEAD:PV"]["server"] == f"127.0.0.1:{dead_port}" and answers["DEAD:PV"]["served"] is False
    assert answers["WRONG:PV"]["served"] is False
    path = next(p for p in report["paths"] if p["port"] == ns_port)
    assert path["kind"] == "name server"
