"""Plan and check a 1,000-IOC fleet (10 PVs each): goal < 0.5 s each. Pure code, no I/O.

Run: python bench/bench_planner.py [--write]
"""

from __future__ import annotations

import statistics
import sys
import time

from report import write_section

from orchestrator.plan import conflicts
from orchestrator.plan import planner
from orchestrator import spec
from orchestrator.hostmodel import HostSnapshot, Interface, IPv4

RUNS = 5


def big_fleet(n: int, strategy: str) -> spec.FleetSpec:
    pvs = [{"name": f"PV{j}", "type": "float", "sim": "sine" if j % 3 == 0 else None} for j in range(10)]
    pvs = [{k: v for k, v in p.items() if v is not None} for p in pvs]
    iocs = [{"name": f"ioc{i}", "runtime": "caproto" if i % 2 else "softioc", "prefix": f"BIG:{i}:", "pvs": pvs}
            for i in range(n)]
    return spec.from_dict({"fleet": "big", "network": {"strategy": strategy, "base_port": 20000}, "iocs": iocs})


def host() -> HostSnapshot:
    lo = Interface("lo", True, True, False, False, 65536, (IPv4.from_cidr("127.0.0.1/8", broadcast=False),))
    eth = Interface("eth1", True, False, True, True, 1500, (IPv4.from_cidr("198.51.100.7/24"),))
    return HostSnapshot((lo, eth), "eth1", ())


def timed(fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    snap = host()
    rows = []
    for strategy in ("shared-port", "distinct-ports"):
        t_spec, fleet = timed(lambda: big_fleet(1000, strategy))
        t_plan, plan = timed(lambda: planner.plan(fleet, snap))
        t_check, found = timed(lambda: conflicts.check(plan, snap))
        assert len(plan.iocs) == 1000 and not conflicts.has_errors(found)
        rows.append(f"| {strategy} | {t_spec * 1000:.0f} ms | {t_plan * 1000:.0f} ms | {t_check * 1000:.0f} ms |")
    body = "\n".join([f"1,000 IOCs x 10 PVs, median of {RUNS} runs; goal plan < 500 ms and check < 500 ms.", "",
                      "| strategy | validate (from dict) | plan | check |", "|---|---|---|---|", *rows])
    print(body)
    if "--write" in sys.argv:
        write_section("Planner", body)


if __name__ == "__main__":
    main()
