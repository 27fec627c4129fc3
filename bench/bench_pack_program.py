"""The pack program alone: N caproto IOCs x 3 PVs in one process, read by broadcast on loopback.

For N in (50, 500) and both dispatch modes (the leader/BPF dispatcher, and IOCFLEET_PACK_DISPATCH=naive
where every member's socket parses every broadcast), launch `ioc.py` with IOCFLEET_PACK and measure:
the time from launch until every member printed its serving line, the time from launch until one
caproto threading client has read all 3N PVs by broadcast (127.255.255.255), and the process's RSS.
Every member binds 0.0.0.0 on one shared UDP port (what a packed fleet on one host plans).

Run: python bench/bench_pack_program.py [N ...]  (the orchestrator side's `up` is bench/bench_up.py)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from ports import free_port  # noqa: E402

PROGRAM = ROOT / "ioc_images" / "caproto" / "ioc.py"
BROADCAST = "127.255.255.255"
PVS = ("A", "B", "C")
NAIVE_LIMIT = 60.0  # seconds a naive run at 500 may take before it is reported as "over"


def pack_json(n: int, port: int) -> str:
    """A pack of `n` members, all on 0.0.0.0:port, beacons to loopback broadcast only."""
    members = []
    for i in range(n):
        ioc = {"name": f"b{i}", "prefix": f"BP{i}:", "pvs": [{"name": "A", "type": "float", "value": i},
                                                           {"name": "B", "type": "int"},
                                                           {"name": "C", "type": "str"}]}
        env = {"EPICS_CA_SERVER_PORT": str(port), "EPICS_CAS_INTF_ADDR_LIST": "0.0.0.0",
               "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": BROADCAST,
               "EPICS_CAS_BEACON_PORT": str(port + 1), "IOCFLEET_IOC": json.dumps(ioc)}
        members.append({"name": f"b{i}", "env": env})
    return json.dumps({"pack": f"bench{n}", "members": members})


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read_all(names: list[str], deadline: float) -> int:
    """Connect and read every PV with one caproto threading client; return how many were read."""
    from caproto.threading.client import Context

    ctx = Context()
    try:
        pvs = ctx.get_pvs(*names, timeout=max(1.0, deadline - time.monotonic()))
        read = 0
        for pv in pvs:
            if time.monotonic() > deadline:
                break
            try:
                pv.wait_for_connection(timeout=max(0.1, deadline - time.monotonic()))
                pv.read(timeout=2)
                read += 1
            except TimeoutError:
                pass
        return read
    finally:
        ctx.disconnect()


def run(n: int, mode: str) -> dict:
    port = free_port(27000, 28998, with_next=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(pack_json(n, port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update({"IOCFLEET_PACK_FILE": handle.name, "IOCFLEET_PACK_DISPATCH": mode, "PYTHONUNBUFFERED": "1"})
    os.environ.update({"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": BROADCAST,
                       "EPICS_CA_SERVER_PORT": str(port), "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
                       "EPICS_CAS_BEACON_ADDR_LIST": BROADCAST})
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(PROGRAM)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        serving = 0
        while serving < n:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"pack exited with {proc.wait()}")
            serving += "serving" in line
        ready = time.monotonic() - start
        names = [f"BP{i}:{p}" for i in range(n) for p in PVS]
        read = read_all(names, start + NAIVE_LIMIT)
        all_read = time.monotonic() - start
        return {"n": n, "mode": mode, "serving_s": ready, "all_pvs_s": all_read, "read": read,
                "pvs": len(names), "rss_mib": rss_mib(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(handle.name)


def main(sizes: list[int]) -> None:
    print("| IOCs | dispatch | all serving | all PVs read (broadcast) | PVs read | RSS |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        for mode in ("dispatch", "naive"):
            r = run(n, mode)
            over = "" if r["read"] == r["pvs"] else f" (gave up at {NAIVE_LIMIT:.0f} s)"
            print(f"| {n} | {mode} | {r['serving_s']:.2f} s | {r['all_pvs_s']:.2f} s{over} | "
                  f"{r['read']}/{r['pvs']} | {r['rss_mib']:.0f} MiB |", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 500])
