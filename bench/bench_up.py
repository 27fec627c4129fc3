"""Time from "start the fleet" to "every PV connectable" for N IOCs, iocfleet against its alternatives.

For N in 1, 5, 10, 20, 50 (caproto IOCs, 3 PVs each, shared port on loopback) and in one run:
  iocfleet-docker   lifecycle.up with the docker backend (what `iocfleet up` does)
  docker-run loop   `docker run -d --network host ...` once per IOC, sequentially
  compose up -d     `docker-compose up -d` of the exported compose file
  iocfleet-process  lifecycle.up with the process backend
  bare processes    the IOC program started N times with Popen (the limit: no supervisor, no engine)
Every case ends with the same readiness check (a CA search through the plan's client settings and a read
of every PV). Results: median of REPEAT runs, ratios to the best anchor and the limit, and the slope
(seconds per IOC, least squares) up to N = 50.

Run: python bench/bench_up.py [--write] [--sizes 1,5,10] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from report import write_section

from orchestrator import host
from orchestrator.images import build as images
from orchestrator.run import lifecycle
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.run.backends.docker import DockerBackend, run_kwargs
from orchestrator.run.backends.process import ProcessBackend
from orchestrator.export import compose_yaml
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.run.readiness import wait_ready

BASE_PORT = 32064
TIMEOUT = 300.0


def fleet_of(n: int, name: str) -> spec.FleetSpec:
    iocs = [{"name": f"b{i}", "runtime": "caproto", "prefix": f"BENCH:{name}:{i}:",
             "pvs": [{"name": "A", "value": 1.0}, {"name": "B", "type": "int"}, {"name": "C", "type": "str"}]}
            for i in range(n)]
    return spec.from_dict({"fleet": name, "network": {"interface": "lo", "base_port": BASE_PORT,
                                                      "strategy": "shared-port"}, "iocs": iocs})


def planned_fleet(n: int, name: str) -> PlannedFleet:
    fleet = fleet_of(n, name)
    snap = host.snapshot()
    plan = planner.plan(fleet, snap, ioc_uid=images.IOC_UID)
    return PlannedFleet(fleet, snap, plan, ())


def ready_or_die(plan, started: float) -> float:
    report = wait_ready(plan, TIMEOUT)
    if not report.ready:
        raise SystemExit(f"bench: {plan.fleet} not ready after {TIMEOUT} s: {report.counts()}")
    return time.perf_counter() - started


def case_iocfleet(n: int, backend) -> float:
    planned = planned_fleet(n, f"bench-{backend.name}")
    started = time.perf_counter()
    try:
        lifecycle.up(planned, backend, timeout=TIMEOUT)
        return time.perf_counter() - started
    finally:
        lifecycle.down(backend, planned.plan.fleet)


def case_docker_run(n: int) -> float:
    planned = planned_fleet(n, "bench-run")
    names = []
    started = time.perf_counter()
    try:
        for ioc in planned.plan.iocs:
            kw = run_kwargs(planned.plan.fleet, ioc, "bench")
            argv = ["docker", "run", "-d", "--network", "host", "--name", kw["name"], "--user", kw["user"],
                    "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--init"]
            for key, value in kw["environment"].items():
                argv += ["-e", f"{key}={value}"]
            subprocess.run([*argv, kw["image"]], check=True, stdout=subprocess.DEVNULL)
            names.append(kw["name"])
        return ready_or_die(planned.plan, started)
    finally:
        if names:
            subprocess.run(["docker", "rm", "-f", *names], stdout=subprocess.DEVNULL, check=False)


def case_compose(n: int) -> float:
    planned = planned_fleet(n, "bench-compose")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(compose_yaml(planned.plan, planned.spec, repeater=False))
        base = ["docker-compose", "-p", "benchcompose", "-f", str(path)]
        started = time.perf_counter()
        try:
            subprocess.run([*base, "up", "-d"], check=True, capture_output=True)
            return ready_or_die(planned.plan, started)
        finally:
            subprocess.run([*base, "down", "-t", "2"], capture_output=True, check=False)


@contextmanager
def bare_processes(plan):
    """Each planned IOC's program Popen'd with its plan env (no supervisor, no engine); stopped on exit."""
    procs = []
    try:
        for ioc in plan.iocs:
            env = {"PATH": os.environ["PATH"], **ioc.env_dict()}
            procs.append(subprocess.Popen(images.program_argv(ioc.runtime), env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def case_bare(n: int) -> float:
    planned = planned_fleet(n, "bench-bare")
    started = time.perf_counter()
    with bare_processes(planned.plan):
        return ready_or_die(planned.plan, started)


def _interrupt(signum, frame):
    """SIGTERM unwinds like Ctrl-C, so every case's `finally` removes what it started."""
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--sizes", default="1,5,10,20,50")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    images.build_images(("caproto",))
    docker, process = DockerBackend(), ProcessBackend()
    cases = {
        "iocfleet up (docker)": lambda n: case_iocfleet(n, docker),
        "docker run loop": case_docker_run,
        "docker-compose up -d": case_compose,
        "iocfleet up (process)": lambda n: case_iocfleet(n, process),
        "bare processes (limit)": case_bare,
    }
    results = {name: {} for name in cases}
    for n in sizes:
        for name, run in cases.items():
            times = [run(n) for _ in range(args.repeat)]
            results[name][n] = statistics.median(times)
            print(f"N={n:3d}  {name:26s} {results[name][n]:7.2f} s", file=sys.stderr, flush=True)
    print(render(results, sizes, args.repeat))
    if args.write:
        write_section("Fleet start-up (time to all PVs connectable)", render(results, sizes, args.repeat))


def render(results: dict, sizes: list[int], repeat: int) -> str:
    header = "| case | " + " | ".join(f"N={n}" for n in sizes) + " | slope s/IOC |"
    rows = [header, "|---|" + "---|" * (len(sizes) + 1)]
    for name, by_n in results.items():
        slope = np.polyfit(sizes, [by_n[n] for n in sizes], 1)[0] if len(sizes) > 1 else float("nan")
        rows.append(f"| {name} | " + " | ".join(f"{by_n[n]:.2f} s" for n in sizes) + f" | {slope:.3f} |")
    anchors = ("docker run loop", "docker-compose up -d")
    lines = [f"caproto IOCs with 3 PVs each, shared UDP port on loopback; median of {repeat} run(s) per cell; "
             "every case ends with the same CA readiness check (search + read of every PV).", "", *rows, ""]
    for n in sizes:
        ours = results["iocfleet up (docker)"][n]
        best = min(results[a][n] for a in anchors)
        limit = results["bare processes (limit)"][n]
        lines.append(f"- N={n}: iocfleet (docker) = {ours / best:.2f}x the best anchor, {ours / limit:.2f}x the limit; "
                     f"iocfleet (process) = {results['iocfleet up (process)'][n] / limit:.2f}x the limit")
    lines.append("")
    lines.append("Goals (issue 5): at N=20 `up` <= 1.0x the best anchor and <= 1.5x the limit; slope <= 0.35 s per IOC.")
    lines += verdicts(results, sizes)
    return "\n".join(lines)


def word(ok: bool) -> str:
    return "met" if ok else "missed"


def verdicts(results: dict, sizes: list[int]) -> list[str]:
    """Each goal of issue 5, met or missed, from this run's numbers."""
    if 20 not in sizes:
        return []
    ours = results["iocfleet up (docker)"]
    best = min(results[a][20] for a in ("docker run loop", "docker-compose up -d"))
    slope = np.polyfit(sizes, [ours[n] for n in sizes], 1)[0] if len(sizes) > 1 else float("nan")
    return ["",
            f"- vs. the best anchor at N=20: {ours[20] / best:.2f}x, **{word(ours[20] <= best)}**.",
            f"- vs. the limit at N=20: {ours[20] / results['bare processes (limit)'][20]:.2f}x, "
            f"**{word(ours[20] <= 1.5 * results['bare processes (limit)'][20])}**"
            f" (the process backend: {results['iocfleet up (process)'][20] / results['bare processes (limit)'][20]:.2f}x).",
            f"- slope: {slope:.3f} s per IOC, **{word(slope <= 0.35)}**."]


if __name__ == "__main__":
    main()
