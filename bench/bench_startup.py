"""How fast `iocfleet --help` starts (goal < 0.3 s), against bare `python -c pass` and importing docker+numpy.

Run: python bench/bench_startup.py [--write]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from report import write_section

RUNS = 15
CASES = {
    "python -c pass (floor)": [sys.executable, "-c", "pass"],
    "iocfleet --help": [sys.executable, "-m", "orchestrator.cli", "--help"],
    "import docker, numpy (what lazy imports avoid)": [sys.executable, "-c", "import docker, numpy"],
}


def medians() -> dict[str, float]:
    """Run every case once per round, RUNS rounds, so machine noise hits all cases alike."""
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(RUNS):
        for name, argv in CASES.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    results = medians()
    floor = results["python -c pass (floor)"]
    rows = [f"| {name} | {t * 1000:.0f} ms | {t / floor:.1f}x |" for name, t in results.items()]
    goal = results["iocfleet --help"]
    body = "\n".join(["Median of %d runs each, interleaved in one run." % RUNS, "",
                      "| command | median | vs. bare python |", "|---|---|---|", *rows, "",
                      f"Goal `iocfleet --help` < 300 ms: **{'met' if goal < 0.3 else 'NOT met'}** ({goal * 1000:.0f} ms)."])
    print(body)
    if "--write" in sys.argv:
        write_section("CLI start-up", body)


if __name__ == "__main__":
    main()
