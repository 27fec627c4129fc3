"""Wait until every PV of a fleet is connectable through the plan's client settings.

Readiness is evidence, not a sleep: a PV is ready when a CA search sent exactly where the plan tells
clients to search (EPICS_CA_ADDR_LIST) found a server, and a read over a TCP circuit to that server
returned its value. Then a client-like sweep (ca.sweep) proves full reach: every PV answered at every
address-list entry that leads to its IOC, in every round, from fresh source ports AND from one fixed
source port (as libca and caproto clients search), misses retried from the same port. A unicast entry
in front of a port several IOCs share fails that (R3) however long one waits, so it is reported at once.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from orchestrator.plan.model import Plan

SEARCH_PARALLEL = 8  # search datagrams (of probe.MAX_NAMES names) in flight at once
READ_PARALLEL = 16  # TCP circuits read at once: one per server, so 50 servers take ~4 rounds, not 50


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
class PathReach:
    """What a client searching at one address-list entry reaches: fresh-port and fixed-port reach."""

    destination: tuple[str, int]
    fresh: float  # answered (round, PV) pairs over expected ones, rounds from fresh source ports
    fixed: float  # the same for rounds from one fixed source port
    missing: tuple[str, ...]  # PVs not answered in every round (after retries from the same port)
    stuck_with: tuple[str, ...]  # the IOCs a client on the fixed source port reaches
    expected_iocs: tuple[str, ...]  # the IOCs this entry should lead to

    @property
    def full(self) -> bool:
        return not self.missing

    def to_dict(self) -> dict:
        return {"destination": f"{self.destination[0]}:{self.destination[1]}", "fresh_reach": round(self.fresh, 4),
                "fixed_reach": round(self.fixed, 4), "full": self.full, "missing": list(self.missing),
                "fixed_port_iocs": list(self.stuck_with), "expected_iocs": list(self.expected_iocs)}

    def text(self, broadcast: bool = False) -> str:
        """One line for the operator. `broadcast`: the entry is a broadcast address, which every IOC hears
        (R4), so a miss there is loss (overload, a firewall), not the unicast hash of R3."""
        host, port = self.destination
        why = ("a broadcast reaches every IOC (R4): searches were lost, the host or its IOCs dropped them"
               if broadcast else "rule R3")
        return (f"EPICS_CA_ADDR_LIST entry {host}:{port} does not reach every IOC behind it: reach "
                f"{self.fixed:.2f} from one fixed source port (a client there is stuck with "
                f"{_some(self.stuck_with) or 'no IOC'} of {_some(self.expected_iocs)}), "
                f"{self.fresh:.2f} from fresh source ports; not answered in every round: {_some(self.missing, 6)} "
                f"({why})")


def _some(names: Sequence[str], most: int = 8) -> str:
    """Names for one line: a large fleet's hundreds of IOCs would bury the message."""
    names = list(names)
    return ", ".join(names[:most]) + (f" ... ({len(names)} in all)" if len(names) > most else "")


@dataclass(frozen=True)
class ReadyReport:
    """The readiness of a whole fleet at one moment."""

    iocs: tuple[IOCReadiness, ...]
    elapsed: float
    paths: tuple[PathReach, ...] = ()  # set once every PV was read: the full-reach sweep per entry

    @property
    def ready(self) -> bool:
        return all(i.complete for i in self.iocs) and all(p.full for p in self.paths)

    @property
    def read_all(self) -> bool:
        """Every PV was found and read at least once (full reach not judged)."""
        return all(i.complete for i in self.iocs)

    def partial_paths(self) -> tuple[PathReach, ...]:
        return tuple(p for p in self.paths if not p.full)

    def with_evidence(self, evidence: dict[str, str]) -> "ReadyReport":
        """The report with server evidence filled in for the IOCs it names."""
        from dataclasses import replace

        return replace(self, iocs=tuple(replace(i, evidence=evidence.get(i.name, i.evidence)) for i in self.iocs))

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
               server_up: Callable[..., dict[str, str]] | None = None,
               sleep: Callable[[float], None] = time.sleep, sweeper=None) -> ReadyReport:
    """Probe until every PV of every IOC (or of `names`: IOC -> PVs) is read, or `timeout` passes; then
    judge full reach per address-list entry (`report.paths`).

    IOCs with `readiness: server` have no PVs to read: `server_up(names, known=servers located so far,
    pvs_done=whether every PV was read)` returns, for those of them whose CA server is up, the evidence
    (a TCP listener, a beacon; run/serverup.py); without `server_up` they are not waited for. IOCs with
    `readiness: none` are not waited for. `give_up(report)` may end the wait early (e.g. an IOC exited for
    good). Returns the last report either way; the caller decides what a timeout or a partial path means.
    `clock` and `sleep` go together: pacing sleeps on `sleep`, so a test's clock is never outrun by a real
    sleep. `sweeper`: ca.sweep.sweep or a stand-in with its signature (tests sweep from a namespace).
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
        located = locate(pending, destinations, search_window) if pending else {}
        for server, outcomes in _read_all(located).items():
            for name, outcome in outcomes.items():
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
        _pace(pass_started + search_window, clock, sleep)
    if report.read_all and destinations and any(wanted.values()):
        report = replace(report, paths=full_reach(plan, wanted, destinations, sweeper), elapsed=clock() - start)
    return report


def full_reach(plan: Plan, wanted: dict[str, tuple[str, ...]], destinations, sweeper=None) -> tuple[PathReach, ...]:
    """Sweep every wanted PV like a client at every entry leading to its IOC; a failing sweep is repeated
    once, so only a miss seen twice (each time after retries from the same port) counts."""
    from orchestrator.ca.sweep import sweep

    sweeper = sweeper or sweep
    owner = {pv: ioc for ioc, pvs in wanted.items() for pv in pvs}
    expected = expected_destinations(plan, wanted, destinations)
    names = list(owner)
    result = sweeper(names, destinations, expected=expected)
    if not result.complete:
        result = sweeper(names, destinations, expected=expected)
    return tuple(path_reach(result, dest, owner) for dest in result.destinations)


def expected_destinations(plan: Plan, wanted: dict[str, tuple[str, ...]], destinations) -> dict[str, list]:
    """PV -> the address-list entries that lead to its IOC: those on the IOC's UDP port (all, if none is)."""
    ports = {i.name: i.udp_port for i in plan.iocs}
    dests = [(str(h), int(p)) for h, p in destinations]
    out = {}
    for ioc, pvs in wanted.items():
        mine = [d for d in dests if d[1] == ports.get(ioc)] or dests
        for pv in pvs:
            out[pv] = mine
    return out


def path_reach(result, dest, owner: dict[str, str]) -> PathReach:
    """Judge one entry of a sweep: reach per kind, PVs missing in some round, IOCs of the fixed port."""
    from orchestrator.ca.sweep import FIXED, FRESH

    names = [n for n in result.names if dest in result.expected[n]]
    missing = sorted({n for _, d, n in result.missing() if d == dest})
    fixed_idx = {r.index for r in result.kind_rounds(FIXED)}
    stuck = sorted({owner[n] for (r, d, n) in result.answers if r in fixed_idx and d == dest})
    expected_iocs = sorted({owner[n] for n in names})
    return PathReach(dest, result.reach(FRESH, dest), result.reach(FIXED, dest), tuple(missing), tuple(stuck),
                     tuple(expected_iocs))


def locate(names: list[str], destinations, window: float) -> dict[tuple[str, int], list[str]]:
    """Search `names` at every destination (batches in parallel); the server (ip, tcp port) of each name."""
    from orchestrator.ca.probe import name_problem, search_batched

    names = [n for n in names if name_problem(n) is None]  # a name no client can search is never found
    if not names or not destinations:
        return {}
    # A distinct-ports fleet has one destination per IOC: search_batched splits them by the probe's
    # destination limit, so no fleet size that passes `check` fails here (issue 13, class 5).
    result = search_batched(names, destinations, rounds=1, timeout=window, until_found=True,
                            parallel=SEARCH_PARALLEL)
    found: dict[tuple[str, int], list[str]] = defaultdict(list)
    seen = set()
    for reply in result.replies:
        if reply.name not in seen:
            seen.add(reply.name)
            found[reply.server].append(reply.name)
    return found


def _pace(until: float, clock, sleep) -> None:
    """Keep at least one search window between passes, so a server that answers searches but fails
    reads is not hammered."""
    left = until - clock()
    if left > 0:
        sleep(left)


def _read_all(located: dict) -> dict:
    """Read every located PV, one circuit per server, READ_PARALLEL servers at a time (a pack's IOCs are
    many servers behind one process: read one after the other they cost ~40 ms each)."""
    if len(located) <= 1:
        return {server: _read(server, pvs) for server, pvs in located.items()}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(READ_PARALLEL, len(located))) as pool:
        futures = {server: pool.submit(_read, server, pvs) for server, pvs in located.items()}
        return {server: future.result() for server, future in futures.items()}


def _read(server, pvs):
    from orchestrator.ca.circuit import read_channels

    return read_channels(server, pvs, timeout=2.0)


def _report(wanted, ready, elapsed, modes=None, evidence=None) -> ReadyReport:
    modes, evidence = modes or {}, evidence or {}
    return ReadyReport(tuple(IOCReadiness(ioc, tuple(p for p in pvs if p in ready[ioc]),
                                          tuple(p for p in pvs if p not in ready[ioc]),
                                          modes.get(ioc, "pvs"), evidence.get(ioc, ""))
                             for ioc, pvs in wanted.items()), elapsed)
