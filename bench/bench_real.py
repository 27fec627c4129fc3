"""Start -> ready for a softioc IOC loading a 200-record .db against a built-in softioc with 200 declared PVs.

Both are one softioc IOC (pythonSoftIOC, EPICS base rsrv) on loopback; `lifecycle.up` starts it and waits
until every PV (200 + HEARTBEAT/UPTIME) answers a CA search through the plan's client settings and a read.
The two cases alternate in one run, per backend; the median of REPEAT runs is reported, with the time
`validate` spends reading the .db (the planner's parse) measured on its own.

Run: python bench/bench_real.py [--write] [--repeat 5] [--backends process,docker]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from report import write_section

from orchestrator import host
from orchestrator.images import build as images
from orchestrator.plan import planner
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.run import lifecycle
from orchestrator import spec

BASE_PORT = 32164
TIMEOUT = 300.0
N = 200
KINDS = ("ai", "ao", "calc", "longout", "bi", "stringin", "mbbi", "waveform")


def database(folder: Path) -> Path:
    """A 200-record database of mixed base types with macros; calc records follow the previous ao (CP)."""
    lines = []
    for i in range(N):
        kind = KINDS[i % len(KINDS)]
        body = {"calc": f'  field(INPA, "$(P)R{i - 1:03d} CP")\n  field(CALC, "A*2")\n',
                "waveform": '  field(FTVL, "DOUBLE")\n  field(NELM, "$(NELM=16)")\n'}.get(kind, "")
        lines.append(f'record({kind}, "$(P)R{i:03d}") {{\n{body}}}\n')
    path = folder / "bench.db"
    path.write_text("".join(lines))
    return path


def fleet(kind: str, folder: Path) -> dict:
    ioc = {"name": "si", "runtime": "softioc", "prefix": f"BR:{kind}:"}
    if kind == "db":
        ioc["db"] = [{"file": str(database(folder)), "macros": {"P": "BR:db:"}}]
    else:
        ioc["pvs"] = [{"name": f"R{i:03d}"} for i in range(N)]
    return {"fleet": f"bench-real-{kind}", "network": {"interface": "lo", "base_port": BASE_PORT}, "iocs": [ioc]}


def start_to_ready(data: dict, backend) -> tuple[float, float]:
    """(seconds to validate the fleet file, seconds from lifecycle.up to every PV read)."""
    t0 = time.perf_counter()
    fleet_spec = spec.from_dict(data)
    validated = time.perf_counter() - t0
    snap = host.snapshot()
    plan = planner.plan(fleet_spec, snap, ioc_uid=backend.ioc_uid)
    assert len(plan.iocs[0].pv_names) == N + 2
    planned = PlannedFleet(fleet_spec, snap, plan, ())
    started = time.perf_counter()
    try:
        result = lifecycle.up(planned, backend, timeout=TIMEOUT)
        assert result.ready
        return validated, time.perf_counter() - started
    finally:
        lifecycle.down(backend, plan.fleet)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="process,docker")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        for name in args.backends.split(","):
            if name == "docker":
                from orchestrator.run.backends.docker import DockerBackend, engine_error

                if engine_error():
                    continue
                images.build_images(["softioc"])
                backend = DockerBackend()
            else:
                from orchestrator.run.backends.process import ProcessBackend

                backend = ProcessBackend()
            times = {"db": [], "pvs": []}
            for _ in range(args.repeat):
                for kind in ("db", "pvs"):  # alternate, so load drifts hit both
                    times[kind].append(start_to_ready(fleet(kind, folder), backend))
            db = statistics.median(t for _, t in times["db"])
            pvs = statistics.median(t for _, t in times["pvs"])
            parse = statistics.median(v for v, _ in times["db"])
            rows.append(f"| {name} | {db:.2f} s | {pvs:.2f} s | {db / pvs:.2f}x | {parse * 1000:.0f} ms |")
            print(rows[-1], flush=True)
    body = (f"One softioc IOC on loopback, {N} records from a `.db` (8 base types incl. calc with CP links and "
            f"waveforms, macros) against {N} declared PVs of the built-in program; `lifecycle.up` until all "
            f"{N} + 2 PVs answer a CA search and a read. Median of {args.repeat} alternating runs per case.\n\n"
            "| backend | .db softioc (200 records) | built-in softioc (200 PVs) | ratio | validate (.db read) |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows))
    print(body)
    if args.write:
        write_section("Real IOCs: .db softioc start-up", body)


if __name__ == "__main__":
    main()
