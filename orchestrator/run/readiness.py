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
    mode: str = "pvs"  # the IOC's readiness: pvs | server | none
    evidence: str = ""  # for `server` readiness: what showed the CA server is up ("" while it is not)

    @property
    def complete(self) -> bool:
        return not self.missing and (self.mode != "server" or bool(self.evidence))

    def how(self) -> str:
        """How this IOC was judged ready, in words (for `up`)."""
        if self.mode == "none":
            return "not waited for (readiness: none)"
        if self.mode == "server":
            return self.evidence or "CA server not seen yet"
        return f"{len(self.ready)}/{len(self.ready) + len(self.missing)} PVs read"


@dataclass(frozen=True)
class ReadyReport:
    """The readiness of a whole fleet at one moment."""

    iocs: tuple[IOCReadiness, ...]
    elapsed: float

    @property
    def ready(self) -> bool:
        return all(i.complete for i in self.iocs)

    def with_evidence(self, evidence: dict[str, str]) -> "ReadyReport":
        """The report with server evidence filled in for the IOCs it names."""
        from dataclasses import replace

        return ReadyReport(tuple(replace(i, evidence=evidence.get(i.name, i.evidence)) for i in self.iocs),
                           self.elapsed)

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
               give_up: Callable[[ReadyReport], bool] | None = None,
               server_up: Callable[..., dict[str, str]] | None = None) -> ReadyReport:
    """Probe until every PV of every IOC (or of `names`: IOC -> PVs) is read, or `timeout` passes.

    IOCs with `readiness: server` have no PVs to read: `server_up(names, known=servers located so far,
    pvs_done=whether every PV was read)` returns, for those of them whose CA server is up, the evidence
    (a TCP listener, a beacon; run/serverup.py); without `server_up` they are not waited for. IOCs with
    `readiness: none` are not waited for. `give_up(report)` may end the wait early (e.g. an IOC exited for
    good). Returns the last report either way; the caller decides what a timeout means.
    """
    start = clock()
    wanted = {i.name: tuple(names[i.name]) if names and i.name in names else i.ready_names for i in plan.iocs}
    modes = {i.name: i.readiness if server_up is not None else ("none" if i.readiness == "server" else i.readiness)
             for i in plan.iocs}
    evidence: dict[str, str] = {}
    known: set = set()  # (address, TCP port) of the servers that answered for the fleet's PVs
    ready: dict[str, set[str]] = {n: set() for n in wanted}
    destinations = client_destinations(plan.client_env_dict())
    report = _report(wanted, ready, 0.0, modes, evidence)
    while True:
        pending = [pv for ioc, pvs in wanted.items() for pv in pvs if pv not in ready[ioc]]
        servers = [n for n, m in modes.items() if m == "server" and n not in evidence]
        if not pending and not servers:
            report = _report(wanted, ready, clock() - start, modes, evidence)
            break
        pass_started = clock()
        if servers:
            evidence.update(server_up(servers, known=set(known), pvs_done=not pending))
        for server, pvs in (locate(pending, destinations, search_window) if pending else {}).items():
            for name, outcome in _read(server, pvs).items():
                if outcome.ok:
                    known.add(server)
                    for ioc, pvs_of_ioc in wanted.items():
                        if name in pvs_of_ioc:
                            ready[ioc].add(name)
        report = _report(wanted, ready, clock() - start, modes, evidence)
        if progress:
            progress(report)
        if report.ready or clock() - start >= timeout or (give_up is not None and give_up(report)):
            break
        _pace(pass_started + search_window, clock)
    return report


def locate(names: list[str], destinations, window: float) -> dict[tuple[str, int], list[str]]:
    """Search `names` at every destination (batches in parallel); the server (ip, tcp port) of each name."""
    from concurrent.futures import ThreadPoolExecutor

    from orchestrator.ca.probe import search

    batches = [names[i:i + SEARCH_BATCH] for i in range(0, len(names), SEARCH_BATCH)]
    with ThreadPoolExecutor(max_workers=min(8, len(batches)) or 1) as pool:
        results = list(pool.map(lambda b: search(b, destinations, rounds=1, timeout=window, until_found=True),
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


def _report(wanted, ready, elapsed, modes=None, evidence=None) -> ReadyReport:
    modes, evidence = modes or {}, evidence or {}
    return ReadyReport(tuple(IOCReadiness(ioc, tuple(p for p in pvs if p in ready[ioc]),
                                          tuple(p for p in pvs if p not in ready[ioc]),
                                          modes.get(ioc, "pvs"), evidence.get(ioc, ""))
                             for ioc, pvs in wanted.items()), elapsed)
