"""Benchmark the IOC images: size, cold and warm build time, start-to-first-answer, idle memory.

    python bench/bench_images.py            # warm build, start time, RSS (uses existing images)
    python bench/bench_images.py --cold     # also a cold build: re-bootstrap the base, fresh wheelhouse
    python bench/bench_images.py --write    # also replace the `## Images` section of docs/benchmarks.md

Network safety: IOCs bind 127.0.0.1 on ports 27000-27999, beacons go to 127.255.255.255, the client
searches 127.0.0.1 only. Every container started here is labelled and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
from report import DOC as BENCH_FILE
from report import write_section

from orchestrator.images import build as images

LABELS = {"org.iocfleet.fleet": "bench-images"}
BASE_PORT = 27600
STARTS = 5
READ_TIMEOUT_S = 0.2
START_DEADLINE_S = 60.0
IDLE_SETTLE_S = 3.0


def bench_ioc(prefix: str) -> dict:
    """A typical small IOC: ten PVs of every kind, one simulated at 1 Hz, one 1000-element waveform."""
    pvs = [{"name": f"T{i}", "type": "float", "value": float(i)} for i in range(5)]
    pvs += [{"name": "MODE", "type": "enum", "value": 0, "enum_strings": ["off", "on"]},
            {"name": "NAME", "type": "str", "value": "bench"},
            {"name": "COUNT", "type": "int", "value": 0},
            {"name": "SINE", "type": "float", "sim": "sine", "rate_hz": 1.0},
            {"name": "WAVE", "type": "float", "count": 1000, "sim": "noise", "rate_hz": 1.0}]
    return {"name": "bench", "prefix": prefix, "pvs": pvs}


def server_env(port: int, prefix: str) -> dict[str, str]:
    return {"EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_CA_SERVER_PORT": str(port),
            "EPICS_CAS_SERVER_PORT": str(port), "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CAS_BEACON_ADDR_LIST": "127.255.255.255", "EPICS_CAS_BEACON_PORT": str(port + 1),
            "EPICS_CA_REPEATER_PORT": str(port + 1), "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_ADDR_LIST": "127.0.0.1", "IOCFLEET_IOC": json.dumps(bench_ioc(prefix))}


def set_client_env(port: int) -> None:
    os.environ.update({"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.0.0.1",
                       "EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_REPEATER_PORT": str(port + 1)})


def first_answer(pv: str, started: float) -> float:
    """Seconds from `started` until a CA read of `pv` succeeds (bounded by START_DEADLINE_S)."""
    from caproto.sync.client import read
    while time.monotonic() - started < START_DEADLINE_S:
        try:
            read(pv, timeout=READ_TIMEOUT_S, repeater=False)
            return time.monotonic() - started
        except Exception:  # not up yet: caproto raises a timeout
            continue
    raise RuntimeError(f"{pv} did not answer within {START_DEADLINE_S} s")


def memory_of(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB of a host pid, from /proc."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss / 1024, pss / 1024


@contextlib.contextmanager
def running(client, runtime: str, port: int, prefix: str):
    container = client.containers.run(images.image_tag(runtime), detach=True, network_mode="host",
                                      environment=server_env(port, prefix), labels=LABELS,
                                      **images.container_hardening(runtime))
    try:
        yield container
    finally:
        container.remove(force=True)


def measure_runtime(client, runtime: str, port: int) -> dict:
    set_client_env(port)
    starts, rss, pss = [], [], []
    for n in range(STARTS):
        prefix = f"IMGTEST:BENCH:{runtime[:3].upper()}{n}:"
        started = time.monotonic()
        with running(client, runtime, port, prefix) as container:
            starts.append(first_answer(prefix + "HEARTBEAT", started))
            if n == 0:
                time.sleep(IDLE_SETTLE_S)  # let the IOC reach its idle steady state
                container.reload()
                r, p = memory_of(container.attrs["State"]["Pid"])
                rss.append(r)
                pss.append(p)
    image = client.images.get(images.image_tag(runtime))
    return {"runtime": runtime, "size_mib": image.attrs["Size"] / 2**20,
            "start_median_s": statistics.median(starts), "start_max_s": max(starts),
            "rss_mib": rss[0], "pss_mib": pss[0]}


def timed_build(client, **kwargs) -> tuple[float, list]:
    started = time.monotonic()
    built = images.build_images(images.RUNTIMES, client=client, **kwargs)
    return time.monotonic() - started, built


def markdown(results: list[dict], cold: float | None, warm: float) -> str:
    caproto = next(r for r in results if r["runtime"] == "caproto")
    lines = [f"One IOC of ten PVs (one simulated at 1 Hz, a 1000-element simulated waveform), {STARTS} starts "
             "per runtime.", "",
             "| runtime | image size | start → first CA answer (median / max) | idle RSS | idle PSS |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['runtime']} | {r['size_mib']:.0f} MiB | {r['start_median_s']:.2f} s / "
                     f"{r['start_max_s']:.2f} s | {r['rss_mib']:.1f} MiB | {r['pss_mib']:.1f} MiB |")
    lines += ["", f"- Warm build (both images up to date): {warm:.2f} s. Goal < 5 s: "
                  f"**{'met' if warm < 5 else 'missed'}**."]
    if cold is not None:
        lines.append(f"- Cold build (mmdebstrap base, wheel download, both images, no cache): {cold:.0f} s.")
    lines += [f"- caproto idle RSS goal ≤ 45 MiB: **{'met' if caproto['rss_mib'] <= 45 else 'missed'}** "
              f"({caproto['rss_mib']:.1f} MiB).",
              "- Start: from `containers.run` until a caproto read of `<prefix>HEARTBEAT` succeeds "
              "(host networking; hardened: read-only root, uid 10064, no capabilities).",
              f"- Memory: `/proc/<pid>/smaps_rollup` of the IOC process after {IDLE_SETTLE_S:.0f} s idle.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a build from nothing")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    cold = None
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="iocfleet-bench-") as cache:
            cold, _ = timed_build(client, force=True, cache_dir=Path(cache))
    timed_build(client)  # make sure both exist before timing the warm path
    warm, built = timed_build(client)
    results = [measure_runtime(client, rt, BASE_PORT + 10 * i) for i, rt in enumerate(images.RUNTIMES)]
    base_mib = client.images.get(built[0].base).attrs["Size"] / 2**20
    text = markdown(results, cold, warm)
    print(text)
    if args.write:
        engine = client.version()["Version"]
        write_section("Images", text, context=f", Docker {engine}, base `{built[0].base}` ({base_mib:.0f} MiB)")
        print(f"wrote {BENCH_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
