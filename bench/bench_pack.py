"""Packed fleets (issue 14): start-up time, memory and search throughput, packed against unpacked, one run.

Cases, each ending with every PV read through the plan's printed client settings (`lifecycle.up`'s own
readiness, or `wait_ready` for bare processes):
  packed up (docker)      lifecycle.up of N caproto IOCs x 3 PVs with `pack: true` (packs of 64)
  unpacked up (docker)    the same fleet, one container per IOC
  bare processes          the IOC program Popen'd N times with each IOC's env (the old limit: no engine)
  packed up (process)     lifecycle.up with the process backend and `pack: true`
Memory: PSS (from /proc/PID/smaps_rollup) of every process of the fleet's containers or IOC processes,
summed, once ready. Search throughput: the same probe (every PV name searched by broadcast, in datagrams
of up to 40 names, ROUNDS rounds) against a pack of N and against N separate processes; names answered per
second. Then N = 500 packed: time from `up` to every PV read, and memory.

Run: python bench/bench_pack.py [--write] [--n 50] [--big 500] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import time

from bench_up import bare_processes
from report import write_section

from orchestrator import host, spec
from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.run import lifecycle
from orchestrator.run.backends.docker import DockerBackend
from orchestrator.run.backends.process import ProcessBackend
from orchestrator.run.readiness import ReadyReport, wait_ready

BASE_PORT = 33064
TIMEOUT = 300.0
ROUNDS = 20
NAMES_PER_DATAGRAM = 40


def fleet_of(n: int, name: str, pack: bool) -> spec.FleetSpec:
    iocs = [{"name": f"b{i}", "runtime": "caproto", "prefix": f"BP:{name[-3:]}:{i}:", "iocstats": False,
             "pvs": [{"name": "A", "value": 1.0}, {"name": "B", "type": "int"}, {"name": "C", "type": "str"}]}
            for i in range(n)]
    return spec.from_dict({"fleet": name, "pack": pack, "network": {"interface": "lo", "base_port": BASE_PORT,
                                                                     "strategy": "shared-port"}, "iocs": iocs})


def planned(n: int, name: str, pack: bool, uid: int) -> PlannedFleet:
    fleet = fleet_of(n, name, pack)
    snap = host.snapshot()
    return PlannedFleet(fleet, snap, planner.plan(fleet, snap, ioc_uid=uid), ())


def pss_kib(pids) -> int:
    """Summed PSS of `pids` (kB as the kernel counts them); a process gone meanwhile counts 0."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def fleet_pids(backend, fleet: str) -> set[int]:
    """Every process of the fleet's IOC instances (container init and children; for processes the IOC)."""
    out: set[int] = set()
    for inst in backend.instances(fleet):
        if inst.role == "ioc" and inst.pid:
            out |= set(host.process_family(inst.pid))
    return out


def search_rate(plan, names) -> float:
    """Names answered per second: ROUNDS rounds of every name, by broadcast, from one socket (a client)."""
    from caproto import SearchRequest, VersionRequest, bcast_socket

    from orchestrator.ca.probe import parse_responses

    sock = bcast_socket(socket)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    dest = ("127.255.255.255", BASE_PORT)
    answered = 0
    started = time.perf_counter()
    for r in range(ROUNDS):
        cids = {}
        for i in range(0, len(names), NAMES_PER_DATAGRAM):
            chunk = names[i:i + NAMES_PER_DATAGRAM]
            cmds = [VersionRequest(0, 13)]
            for k, name in enumerate(chunk):
                cid = r * 100000 + i + k
                cids[cid] = name
                cmds.append(SearchRequest(name, cid, 13))
            sock.sendto(b"".join(bytes(c) for c in cmds), dest)
        seen: set[int] = set()
        deadline = time.perf_counter() + 5.0
        while len(seen) < len(cids) and time.perf_counter() < deadline:
            try:
                data, addr = sock.recvfrom(65536)
            except socket.timeout:
                continue
            seen.update(cid for cid, _, _ in parse_responses(data, addr) if cid in cids)
        answered += len(seen)
    sock.close()
    return answered / (time.perf_counter() - started)


def case_up(n: int, backend, pack: bool, measure_rate: bool = False) -> dict:
    p = planned(n, f"bp-{backend.name[:4]}-{'pk' if pack else 'un'}", pack, backend.ioc_uid)
    read_at = []

    def progress(event) -> None:  # the moment readiness has read every PV (before its full-reach sweep)
        if isinstance(event, ReadyReport) and event.read_all and not read_at:
            read_at.append(time.perf_counter())

    started = time.perf_counter()
    try:
        lifecycle.up(p, backend, timeout=TIMEOUT, progress=progress)
        took = time.perf_counter() - started
        pids = fleet_pids(backend, p.plan.fleet)
        out = {"time": took, "read": (read_at or [time.perf_counter()])[0] - started, "pss": pss_kib(pids),
               "processes": len(pids)}
        if measure_rate:
            out["rate"] = search_rate(p.plan, [n for i in p.plan.iocs for n in i.pv_names])
        return out
    finally:
        lifecycle.down(backend, p.plan.fleet)


def case_bare(n: int, measure_rate: bool = False) -> dict:
    p = planned(n, "bp-bare", False, os.getuid())
    started = time.perf_counter()
    with bare_processes(p.plan) as procs:
        report = wait_ready(p.plan, TIMEOUT)
        if not report.ready:
            raise SystemExit(f"bench: bare processes not ready after {TIMEOUT} s: {report.counts()}")
        took = time.perf_counter() - started
        out = {"time": took, "read": took, "pss": pss_kib(pr.pid for pr in procs), "processes": len(procs)}
        if measure_rate:
            out["rate"] = search_rate(p.plan, [n for i in p.plan.iocs for n in i.pv_names])
        return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--big", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    images.build_images(("caproto",))
    docker, process = DockerBackend(), ProcessBackend()
    cases = {
        "packed up (docker)": lambda: case_up(args.n, docker, True, measure_rate=True),
        "unpacked up (docker)": lambda: case_up(args.n, docker, False),
        "bare processes": lambda: case_bare(args.n, measure_rate=True),
        "packed up (process)": lambda: case_up(args.n, process, True),
    }
    results = {}
    for name, run in cases.items():
        runs = [run() for _ in range(args.repeat)]
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"N={args.n} {name:22s} {results[name]}", file=sys.stderr, flush=True)
    big = {}
    if args.big:
        big = case_up(args.big, docker, True)
        print(f"N={args.big} packed up (docker) {big}", file=sys.stderr, flush=True)
    text = render(results, big, args)
    print(text)
    if args.write:
        write_section("Packed fleets (issue 14)", text)


def render(results: dict, big: dict, args) -> str:
    n = args.n
    rows = ["| case | every PV read | `up` returned | PSS total | processes | search replies/s |",
            "|---|---|---|---|---|---|"]
    for name, r in results.items():
        rate = f"{r['rate']:.0f}" if "rate" in r else "-"
        rows.append(f"| {name} | {r['read']:.2f} s | {r['time']:.2f} s | {r['pss'] / 1024:.0f} MiB | "
                    f"{r['processes']:.0f} | {rate} |")
    packed, unpacked, bare = (results["packed up (docker)"], results["unpacked up (docker)"],
                              results["bare processes"])
    t_vs_unpacked = packed["time"] / unpacked["time"]
    t_vs_bare = packed["time"] / bare["time"]
    mem = packed["pss"] / unpacked["pss"]
    lines = [f"N = {n} caproto IOCs x 3 PVs, shared UDP port on loopback, packs of 64; median of {args.repeat} "
             "run(s); every case ends with every PV read through the printed client settings. PSS: every process "
             "of the fleet's containers (init included) or IOC processes, summed once ready. Search replies/s: "
             f"every PV name searched by broadcast from one client socket in datagrams of {NAMES_PER_DATAGRAM} "
             f"names, {ROUNDS} rounds, same probe against the pack and the {n} separate processes.", "", *rows, "",
             f"- packed `up` (docker) = {t_vs_unpacked:.3f}x unpacked `up` (docker): goal <= 0.1x, "
             f"**{'met' if t_vs_unpacked <= 0.1 else 'missed'}**.",
             f"- packed `up` (docker) = {t_vs_bare:.3f}x {n} bare processes: goal <= 0.5x, "
             f"**{'met' if t_vs_bare <= 0.5 else 'missed'}**.",
             f"- PSS packed / unpacked = {mem:.3f}: goal <= 0.15, **{'met' if mem <= 0.15 else 'missed'}**.",
             f"- search replies/s, pack of {n} / {n} processes = "
             f"{packed['rate'] / bare['rate']:.2f}x ({packed['rate']:.0f} vs {bare['rate']:.0f})."]
    if big:
        lines += [f"- N = {args.big} packed (docker, {-(-args.big // 64)} packs of at most 64): every PV read through "
                  f"the printed settings {big['read']:.2f} s after `up` began (goal <= 5 s, "
                  f"**{'met' if big['read'] <= 5.0 else 'missed'}**); `up` returned after its full-reach sweep at "
                  f"{big['time']:.2f} s; PSS {big['pss'] / 1024:.0f} MiB in {big['processes']} processes."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
