"""The doctor's live probe: 200 PVs on 3 paths, goal < 3 s; against sequential caproto sync reads.

Three caproto IOCs (67 + 67 + 66 PVs) run in a lab network namespace (tests/labnet.py, needs root);
the three paths are the lab subnet broadcast, 127.255.255.255 and the host's unicast address. Times:
- the probe alone (`diagnose.search`: 4 batches of <= 64 names x 3 destinations, one collection window),
- the whole doctor as a user runs it (`python -m orchestrator.doctor`, interpreter start-up included),
- the baseline: reading the 200 PVs one after the other with caproto's sync client (search, connect, read),
  which is what "check by hand that every PV is there" costs.

Run: sudo python bench/bench_doctor.py [--write]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from labnet import make_lab, start_process  # noqa: E402

from orchestrator.doctor import gather as diagnose

N_PVS = 200
RUNS = 5
GOAL = 3.0
SERVER = ROOT / "tests" / "integration" / "servers" / "caproto_server.py"

SYNC_READS = """
import sys, time
import caproto.sync.client as c
names = sys.argv[1:]
start = time.perf_counter()
for n in names:
    c.read(n, timeout=2, repeater=False)
print(time.perf_counter() - start)
"""


def env_for(lab) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    return env | {"EPICS_CA_SERVER_PORT": "5064", "EPICS_CAS_SERVER_PORT": "5064",
                  "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": lab.broadcast,
                  "EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": lab.broadcast, "PYTHONUNBUFFERED": "1"}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_doctor needs root (network namespaces)")
    names = [f"BENCH:{i % 3}:{i:03d}" for i in range(N_PVS)]
    with make_lab(peer_in_namespace=True, tag="b") as lab:
        env = env_for(lab)
        procs = [start_process(lab, "ns", [sys.executable, str(SERVER), *names[k::3]], env) for k in range(3)]
        try:
            assert all(p.ready for p in procs), [p.stop() for p in procs]
            paths = [(lab.broadcast, 5064), ("127.255.255.255", 5064), (lab.ns_addr, 5064)]
            probe_times, answered = [], 0
            for _ in range(RUNS):
                result = diagnose.search(names, paths, 1, 0.5, lab.socket_factory("ns"))
                probe_times.append(result.elapsed)
                answered = len({r.name for r in result.replies})
            doctor_times, paths_ok = [], None
            argv = [sys.executable, "-m", "orchestrator.doctor.gather", "--json", "--repeat", "1",
                    "--addr-list", " ".join(f"{h}:{p}" for h, p in paths), "--names", *names]
            for _ in range(RUNS):
                start = time.perf_counter()
                done = subprocess.run(lab.argv(argv, "ns"), env=env, capture_output=True, text=True, timeout=60)
                doctor_times.append(time.perf_counter() - start)
                paths_ok = len(json.loads(done.stdout)["paths"])
            seq = subprocess.run(lab.argv([sys.executable, "-c", SYNC_READS, *names], "ns"), env=env,
                                 capture_output=True, text=True, timeout=600)
            sequential = float(seq.stdout.strip().splitlines()[-1])
        finally:
            for p in procs:
                p.stop()
    probe_med, doctor_med = statistics.median(probe_times), statistics.median(doctor_times)
    met = "met" if doctor_med < GOAL else "**NOT met**"
    body = "\n".join([
        f"{N_PVS} PVs on 3 caproto IOCs in a lab namespace, 3 paths (subnet broadcast, 127.255.255.255, "
        f"unicast); median of {RUNS} runs, 1 round, 0.5 s collection window; {answered}/{N_PVS} names answered, "
        f"{paths_ok} paths reported.", "",
        "| what | time | vs. sequential sync reads |", "|---|---|---|",
        f"| probe alone (`diagnose.search`, 4 batches x 3 paths in flight at once) | {probe_med:.2f} s | "
        f"{probe_med / sequential:.3f}x |",
        f"| whole doctor (`python -m orchestrator.doctor`, start-up and host snapshot included) | "
        f"{doctor_med:.2f} s | {doctor_med / sequential:.3f}x |",
        f"| baseline: 200 caproto `sync.client.read` one after another (1 path) | {sequential:.2f} s | 1.0x |", "",
        f"Goal whole doctor < {GOAL:.0f} s: {met} ({doctor_med:.2f} s). The probe's time is its collection "
        "window: every datagram is sent at once and replies are gathered for 0.5 s."])
    print(body)
    if "--write" in sys.argv:
        write_section("Doctor", body)


if __name__ == "__main__":
    main()
