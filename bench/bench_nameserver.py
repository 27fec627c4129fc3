"""Connect time of 60 PVs on 20 IOCs from another subnet: via the name server vs 20 host:port entries.

Runs the routed-lab integration test (tests/integration/test_nameserver_lab.py, needs root: network
namespaces), which measures both in one run with pyepics (libca) in the client namespace and leaves its
numbers in an evidence file; `--write` puts them into docs/benchmarks.md.

    python bench/bench_nameserver.py [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parent.parent


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as evidence:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "tests/integration/test_nameserver_lab.py"], cwd=ROOT, text=True,
                              env={**__import__("os").environ, "IOCFLEET_EVIDENCE_DIR": evidence})
        if proc.returncode != 0:
            sys.exit(f"the lab test failed (exit {proc.returncode})")
        return load(Path(evidence))


def load(evidence: Path) -> list[dict]:
    """The evidence of each backend the lab test ran (process first)."""
    runs = [json.loads(p.read_text()) for p in evidence.glob("nameserver-connect*.json")]
    return sorted(runs, key=lambda d: d.get("backend", "process") != "process")


def render_all(runs: list[dict]) -> str:
    return "\n\n".join(f"**{d.get('backend', 'process')} backend**\n\n{render(d)}" for d in runs)


def render(d: dict) -> str:
    ns, dp = d["name_server_median_s"], d["distinct_ports_median_s"]
    runs = lambda xs: ", ".join(f"{x * 1000:.0f}" for x in xs)  # noqa: E731
    return "\n".join([
        f"{d['iocs']} IOCs x 3 PVs ({d['pvs']} PVs), client namespace -> router -> IOC host (routing "
        f"only), {d.get('backend', 'process')} backend; {d['client']}; time from creating the {d['pvs']} channels until all are "
        f"connected; median of {d['runs']} runs each, in one run of the lab.",
        "",
        "| client settings | entries | runs (ms) | median | vs. distinct ports |",
        "|---|---|---|---|---|",
        f"| name server, cache empty (just restarted) | 1 | {d['name_server_cold_s'] * 1000:.0f} | "
        f"{d['name_server_cold_s'] * 1000:.0f} ms | {d['name_server_cold_s'] / dp:.2f}x |",
        f"| name server (EPICS_CA_NAME_SERVERS + UDP entry) | 1 | {runs(d['name_server_s'])} | {ns * 1000:.0f} ms | "
        f"{ns / dp:.2f}x |",
        f"| distinct ports (host:port per IOC) | {d['iocs']} | {runs(d['distinct_ports_s'])} | {dp * 1000:.0f} ms | 1.00x |",
        "",
        _verdict(ns / dp),
    ])


def _verdict(ratio: float) -> str:
    speed = ("about as fast as" if 0.8 <= ratio <= 1.25 else
             f"{1 / ratio:.1f}x faster than" if ratio < 1 else f"{ratio:.1f}x slower than")
    return (f"With a warm cache the name server connects {speed} distinct ports. What it changes is the client "
            "settings (one entry instead of one per IOC, unchanged when the fleet changes) and that the IOCs "
            "share one port.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the section of docs/benchmarks.md")
    parser.add_argument("--from", dest="source", type=Path, help="render an evidence directory of an earlier run")
    args = parser.parse_args()
    data = load(args.source) if args.source else run()
    body = render_all(data)
    print(body)
    if args.write:
        write_section("Name server vs distinct ports (routed clients)", body)


if __name__ == "__main__":
    main()
