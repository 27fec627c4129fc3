"""Wait until every PV of a fleet is connectable through the plan's client settings.

Readiness is evidence, not a sleep: a PV is ready when a CA search sent exactly where the plan tells
clients to search (EPICS_CA_ADDR_LIST) found a server, and a read over a TCP circuit to that server
returned its value.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.plan.model import Plan

SEARCH_BATCH = 64  # names per search datagram (probe.MAX_NAMES)


@dataclass(frozen=True)
class IOCReadiness:
    """How many of one IOC's PVs answered, and which did not."""

    name: str
    ready: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class ReadyReport:
    """The readiness of a whole fleet at one moment."""

    iocs: tuple[IOCReadiness, ...]
    elapsed: float

    @property
    def ready(self) -> bool:
        return all(i.complete for i in self.iocs)

    def ioc(self, name: str) -> IOCReadiness:
        return next(i for i in self.iocs if i.name == name)

    def counts(self) -> tuple[int, int]:
        done = sum(len(i.ready) for i in self.iocs)
        return done, done + sum(len(i.missing) for i in self.iocs)


def client_destinations(client_env: dict[str, str]) -> list[tuple[str, int]]:
    """EPICS_CA_ADDR_LIST as (host, port) pairs, ports defaulting to EPICS_CA_SERVER_PORT."""
    from orchestrator.ca.env import destinations

    return destinations(client_env)


def wait_ready(plan: Plan, timeout: float, names: dict[str, Sequence[str]] | None = None,
               progress: Callable[[ReadyReport], None] | None = None,
               clock: Callable[[], float] = time.monotonic, search_window: float = 0.25,
               give_up: Callable[[ReadyReport], bool] | None = None) -> ReadyReport:
    """Probe until every PV of every IOC (or of `names`: IOC -> PVs) is read, or `timeout` passes.

    `give_up(report)` may end the wait early (e.g. an IOC exited for good). Returns the last report
    either way; the caller decides what a timeout means.
    """
    start = clock()
    wanted = {i.name: tuple(names[i.name]) if names and i.name in names else i.pv_names for i in plan.iocs}
    ready: dict[str, set[str]] = {n: set() for n in wanted}
    destinations = client_destinations(plan.client_env_dict())
    report = _report(wanted, ready, 0.0)
    while True:
        pending = [pv for ioc, pvs in wanted.items() for pv in pvs if pv not in ready[ioc]]
        if not pending:
            break
        pass_started = clock()
        for server, pvs in locate(pending, destinations, search_window).items():
            for name, outcome in _read(server, pvs).items():
                if outcome.ok:
                    for ioc, pvs_of_ioc in wanted.items():
                        if name in pvs_of_ioc:
                            ready[ioc].add(name)
        report = _report(wanted, ready, clock() - start)
        if progress:
            progress(report)
        if report.ready or clock() - start >= timeout or (give_up is not None and give_up(report)):
            break
        _pace(pass_started + search_window, clock)
    return report


def locate(names: list[str], destinations, window: float) -> dict[tuple[str, int], list[str]]:
    """Search `names` at every destination (batches in parallel); the server (ip, tcp port) of each name."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.ca.probe import MAX_DESTINATIONS, name_problem, search

    names = [n for n in names if name_problem(n) is None]  # a name no client can search is never found
    destinations = list(destinations)
    # A distinct-ports fleet has one destination per IOC: search them MAX_DESTINATIONS at a time (the
    # probe's cid space), so no fleet size that passes `check` fails here (issue 13, class 5).
    batches = [(names[i:i + SEARCH_BATCH], destinations[j:j + MAX_DESTINATIONS])
               for i in range(0, len(names), SEARCH_BATCH) for j in range(0, len(destinations), MAX_DESTINATIONS)]
    if not destinations:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(batches)) or 1) as pool:
        results = list(pool.map(lambda b: search(b[0], b[1], rounds=1, timeout=window, until_found=True),
                                batches))
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    seen = set()
    for result in results:
        for reply in result.replies:
            if reply.name not in seen:
                seen.add(reply.name)
                found[reply.server].append(reply.name)
    return found


def _pace(until: float, clock) -> None:
    """Keep at least one search window between passes, so a server that answers searches but fails
    reads is not hammered."""
    left = until - clock()
    if left > 0:
        time.sleep(left)


def _read(server, pvs):
    from orchestrator.ca.circuit import read_channels

    return read_channels(server, pvs, timeout=2.0)


def _report(wanted, ready, elapsed) -> ReadyReport:
    return ReadyReport(tuple(IOCReadiness(ioc, tuple(p for p in pvs if p in ready[ioc]),
                                          tuple(p for p in pvs if p not in ready[ioc]))
                             for ioc, pvs in wanted.items()), elapsed)
