"""Bring a fleet up, find it, take it down: desired state (the plan) against actual (the backend).

`up` diffs the plan against the running instances (found by label or state file), applies only the
difference, then waits until every PV answers over CA. On failure or interruption it removes what it
started, unless asked to keep it. `Fleet` wraps the same as a context manager for tests and scripts.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass, field

from orchestrator.images.catalog import image_tag
from orchestrator.plan.identity import REPEATER, image_ref, plan_hash
from orchestrator.run.instance import Backend, Instance, unit_of
from orchestrator.findings import Finding, has_errors
from orchestrator.errors import ReachIncomplete, ReadinessTimeout, RefusedError
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.plan.model import PlannedIOC
from orchestrator.run.readiness import ReadyReport, wait_ready
from orchestrator.run.serverup import listener_evidence

LOG_LINES_ON_TIMEOUT = 20


@dataclass(frozen=True)
class Diff:
    """What `up` must do: keep, create, replace (changed or not running) and remove (not in the plan)."""

    keep: tuple[str, ...]
    create: tuple[str, ...]
    replace: tuple[str, ...]
    remove: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.create or self.replace or self.remove)

    def to_dict(self) -> dict:
        return {"keep": list(self.keep), "create": list(self.create), "replace": list(self.replace),
                "remove": list(self.remove)}


@dataclass
class UpResult:
    """What `up` did and found: the diff, the instances, readiness, findings."""

    fleet: str
    backend: str
    diff: Diff
    instances: list[Instance]
    report: ReadyReport | None
    findings: list[Finding] = field(default_factory=list)
    client_env: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.report is not None and self.report.ready

    def to_dict(self) -> dict:
        iocs = []
        for item in (self.report.iocs if self.report else ()):
            inst = unit_of(self.instances, item.name)
            iocs.append({
                "name": item.name, "pack": inst.name if inst and inst.members else None,
                "runtime": inst.runtime if inst else None,
                "state": inst.state if inst else "missing", "container": inst.container if inst else None,
                "pid": inst.pid if inst else None,
                "tcp_port": inst.tcp_port if inst and not inst.members else None,  # a pack has many
                "pvs_ready": len(item.ready), "pvs_total": len(item.ready) + len(item.missing),
                "missing": list(item.missing), "readiness": item.mode, "ready_by": item.how(),
            })
        return {"fleet": self.fleet, "backend": self.backend, "ready": self.ready, "iocs": iocs,
                "client_env": self.client_env, "diff": self.diff.to_dict(),
                "findings": [f.to_dict() for f in self.findings],
                "reach": [p.to_dict() for p in (self.report.paths if self.report else ())]}


def diff(iocs: tuple[PlannedIOC, ...], hashes: dict[str, str], actual: list[Instance]) -> Diff:
    """Compare planned IOCs (with their config hashes) against actual instances of the fleet."""
    current = {i.name: i for i in actual if i.role == "ioc"}
    keep, create, replace = [], [], []
    for ioc in iocs:
        inst = current.get(ioc.name)
        if inst is None:
            create.append(ioc.name)
        elif inst.plan_hash != hashes[ioc.name] or inst.state not in ("running", "restarting"):
            replace.append(ioc.name)
        else:
            keep.append(ioc.name)
    planned = {i.name for i in iocs}
    remove = [name for name in current if name not in planned]
    return Diff(tuple(keep), tuple(create), tuple(replace), tuple(sorted(remove)))


def config_hashes(planned: PlannedFleet) -> dict[str, str]:
    """The plan hash of every start unit (an IOC that runs alone, or a pack)."""
    return {i.name: plan_hash(i, image_ref(i, image_tag)) for i in planned.plan.units()}


def up(planned: PlannedFleet, backend: Backend, timeout: float = 60.0, force: bool = False,
       keep_on_failure: bool = False, dry_run: bool = False, progress=None) -> UpResult:
    """Make the fleet match the plan and wait until every PV answers; roll back what was started on failure."""
    plan = planned.plan
    findings = list(planned.findings)
    actual = backend.instances(plan.fleet)
    findings += _stale(plan.fleet, actual)
    hashes = config_hashes(planned)
    units = plan.units()  # an IOC that runs alone, or a pack of caproto IOCs (issue 14)
    changes = diff(units, hashes, actual)
    result = UpResult(plan.fleet, backend.name, changes, actual, None, findings, plan.client_env_dict())
    if has_errors(planned.findings) and not force:
        errors = [f for f in planned.findings if f.severity == "error"]
        raise RefusedError(f"{len(errors)} error finding(s), first: {errors[0].code}: {errors[0].message}",
                           f"fleet {plan.fleet}", errors[0].fix + "; or pass --force")
    supported = getattr(backend, "check_supported", None)
    if supported is not None:  # what this backend cannot run is a usage error (exit 2), dry run or not
        supported(list(plan.iocs))
    if dry_run:
        return result
    to_start = [i for i in units if i.name in changes.create or i.name in changes.replace]
    # Rollback removes by name whatever exists of these, so an instance whose start was interrupted
    # half-way (created by the engine, not yet returned to us) goes too.
    starting = {i.name for i in to_start}
    with _interrupt_on_sigterm():
        try:
            backend.prepare(to_start, progress=_event(progress))
            for name in changes.remove + changes.replace:
                backend.remove(next(i for i in actual if i.name == name and i.role == "ioc"))
            if not any(i.role == "repeater" for i in actual) and not _repeater_elsewhere(planned):
                from orchestrator.run.repeater import ensure  # one host repeater, under the host lock (R12)

                ensure(backend, plan.fleet, plan.repeater.port, progress=progress)
            _start_all(backend, plan, to_start, hashes, progress, False)
            if _name_server(backend, plan, actual, progress):
                starting.add(NAME_SERVER)
            if plan.fanout is not None:  # network.fanout: dnat (R17): the fleet's own nftables table
                from orchestrator.run import fanout

                fanout.apply(plan.fanout)
            report = wait_ready(plan, timeout, progress=progress, give_up=_exited_for_good(backend, plan.fleet),
                                server_up=listener_evidence(backend, plan))
            result.report = report
            result.instances = backend.instances(plan.fleet)
            if report.read_all and report.partial_paths():
                raise ReachIncomplete(reach_text(report, planned), f"fleet {plan.fleet}",
                                      reach_fix(planned, report))
            if not report.ready:
                raise ReadinessTimeout(_timeout_text(report, backend, result.instances), f"fleet {plan.fleet}",
                                       "read the log lines above; `iocfleet logs FLEET IOC` shows more")
            if plan.name_server is not None:  # R15: libca's path too (readiness searched it over UDP)
                _names_resolve_over_tcp(plan)
            return result
        except BaseException:
            if not keep_on_failure:
                for inst in backend.instances(plan.fleet):
                    if inst.name in starting:
                        backend.remove(inst)
                _release_repeater()
            raise


START_PARALLEL = 2  # engine calls in flight: on 2 cores more only competes with the IOCs booting (bench_up)


def _start_all(backend: Backend, plan, iocs: list[PlannedIOC], hashes: dict[str, str], progress,
               repeater: bool) -> None:
    """Start the IOCs (and the fleet's repeater) a few at a time; on any failure or interrupt, let started
    calls finish, then re-raise (the caller's rollback removes by name whatever exists).

    IOCs of one shared port may start at the same moment: our caproto program listens on its TCP port
    as soon as it binds it (ioc_images/caproto/ioc.py), so two of them never end up on one TCP port.
    """
    from concurrent.futures import ThreadPoolExecutor

    def start(ioc: PlannedIOC) -> None:
        what = f"pack of {len(ioc.members)} caproto IOCs" if ioc.members else ioc.runtime
        _emit(progress, f"starting {ioc.name} ({what})")
        backend.start(plan.fleet, ioc, hashes[ioc.name])

    pool = ThreadPoolExecutor(max_workers=max(1, min(START_PARALLEL, len(iocs) + repeater)))
    try:
        futures = [pool.submit(backend.start_repeater, plan.fleet, plan.repeater.port)] if repeater else []
        futures += [pool.submit(start, ioc) for ioc in iocs]
        for future in futures:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _exited_for_good(backend: Backend, fleet: str):
    """A give-up test for readiness: an IOC still missing PVs has exited and will not be restarted."""
    import time

    last = {"at": 0.0}

    def check(report: ReadyReport) -> bool:
        now = time.monotonic()
        if now - last["at"] < 1.0:  # asking the backend costs a docker call: once a second is plenty
            return False
        last["at"] = now
        missing = {i.name for i in report.iocs if not i.complete}
        current = backend.instances(fleet, details=False)
        return any(i.state in ("exited", "dead") and any(i.runs(name) for name in missing) for i in current)

    return check


def _stale(fleet: str, actual: list[Instance]) -> list[Finding]:
    dead = [i.name for i in actual if i.state not in ("running", "restarting")]
    if not dead:
        return []
    return [Finding("stale-fleet", "warning", f"{len(dead)} instance(s) of fleet {fleet} are not running: "
                    f"{', '.join(dead)}", "up replaces them; `iocfleet down` removes them", "R16", tuple(dead))]


def _repeater_elsewhere(planned: PlannedFleet) -> bool:
    """A repeater already holds the port (another fleet's or the host's): don't start a second (R12).
    The plan decided it from the same snapshot, so `plan --json` says what `up` does."""
    return planned.plan.repeater.provider == "host"


def reach_text(report: ReadyReport, planned: PlannedFleet | None = None) -> str:
    """Every PV answered once, but not at full reach from a client's fixed source port: one line per path."""
    lines = ["every PV answered, but not to every client:"]
    lines += [f"  {p.text(_is_broadcast(p.destination[0], planned))}" for p in report.partial_paths()]
    return "\n".join(lines)


def _is_broadcast(address: str, planned: PlannedFleet | None) -> bool:
    """Whether this host treats `address` as a broadcast (every socket on the port hears it, R4)."""
    from orchestrator.ca import rules

    interfaces = planned.snapshot.interfaces if planned is not None else ()
    return rules.classify(address, rules.LOCAL, interfaces) == "broadcast" or address == "127.255.255.255"


def reach_fix(planned: PlannedFleet, report: ReadyReport | None = None) -> str:
    """The fix for partial reach: on a unicast entry, a broadcast or distinct ports (R3); on a broadcast
    entry, nothing is wrong with the plan: searches were lost."""
    partial = report.partial_paths() if report is not None else ()
    if partial and all(_is_broadcast(p.destination[0], planned) for p in partial):
        return ("searches to a broadcast entry went unanswered even after retries from the same port: the host "
                "was overloaded or a firewall drops them; run `iocfleet up` again, and `iocfleet doctor --fleet "
                "FILE` to see which IOCs answer")
    plan = planned.plan
    iface, addr = plan.interface or "IF", plan.address or "ADDR"
    found = planned.snapshot.interface(plan.interface) if plan.interface else None
    prefix = next((a.prefixlen for a in (found.ipv4 if found else ()) if a.address == plan.address), None)
    addr += f"/{prefix}" if prefix is not None else "/LEN"
    return (f"a unicast address reaches one IOC per client source port when IOCs share a port (R3): give "
            f"{iface} a broadcast (ip addr del {addr} dev {iface} && ip addr add {addr} brd + dev {iface}) "
            f"and run `iocfleet up` again, or "
            f"use --strategy distinct-ports")


def _release_repeater() -> None:
    """After a failed `up`: stop the host repeater iocfleet started, if no fleet runs now (never raises)."""
    from orchestrator.run.repeater import release

    try:
        release()
    except Exception:  # noqa: BLE001 - the original failure is what the user must see
        pass


def _timeout_text(report: ReadyReport, backend: Backend, instances: list[Instance]) -> str:
    parts = ["timed out waiting for PVs:"]
    for item in report.iocs:
        if item.complete:
            continue
        inst = unit_of(instances, item.name)
        state = "missing" if inst is None else inst.state + (
            f", exit code {inst.exit_code}" if inst.exit_code is not None else "")
        if item.mode == "server" and not item.missing:
            parts.append(f"  {item.name} ({state}): readiness server: no CA server seen (no TCP listener"
                         f"{'' if inst is None or inst.tcp_port is None else ' on the planned port'}, "
                         "no beacon); declare its PVs, or use `readiness: none`")
            if inst:
                parts += [f"    | {line}" for line in logs_of(backend, inst, item.name, LOG_LINES_ON_TIMEOUT)]
            continue
        parts.append(f"  {item.name} ({state}): {len(item.missing)} of {len(item.missing) + len(item.ready)} "
                     f"PVs never answered: {', '.join(item.missing[:8])}{' ...' if len(item.missing) > 8 else ''}")
        if inst:
            parts += [f"    | {line}" for line in logs_of(backend, inst, item.name, LOG_LINES_ON_TIMEOUT)]
    return "\n".join(parts)


def down(backend: Backend, fleet: str) -> list[Instance]:
    """Remove every instance of `fleet` the backend can find (by label or state), whatever the fleet file says."""
    removed = backend.instances(fleet)
    for inst in sorted(removed, key=lambda i: i.role == "repeater"):
        backend.remove(inst)
    _forget_names(fleet)
    from orchestrator.run import fanout

    fanout.remove(fleet)  # the fleet's nftables table, if it has one (also after a crash)
    return removed


NAME_SERVER = "ca-nameserver"  # plan.nameserver.INSTANCE


def _name_server(backend: Backend, plan, actual: list[Instance], progress) -> bool:
    """Start or update the fleet's name server (strategy name-server, R15); True if one was started."""
    from orchestrator.run import nameserver

    return nameserver.ensure(backend, plan, actual, progress=progress)


def _names_resolve_over_tcp(plan) -> None:
    from orchestrator.run import nameserver

    missing = nameserver.unresolved_over_tcp(plan)
    if missing:
        raise ReadinessTimeout(f"the name server {plan.name_server.endpoint} resolves {len(missing)} PV(s) over UDP "
                               f"but not over TCP (EPICS_CA_NAME_SERVERS), first {missing[0]}",
                               f"fleet {plan.fleet}", "`iocfleet logs FLEET ca-nameserver` shows why")


def _forget_names(fleet: str) -> None:
    from orchestrator.run import nameserver

    nameserver.forget(fleet)


def find(backend: Backend, fleet: str, name: str) -> Instance:
    """The instance that runs IOC `name` of `fleet`: its own, or its pack (`inst.members` then names it)."""
    from orchestrator.errors import UsageError
    from orchestrator.run.instance import per_ioc

    found = backend.instances(fleet)
    inst = unit_of(found, name)
    if inst is not None:
        return inst
    names = ", ".join(i.name for i in per_ioc(found) if i.name != REPEATER) or "none"
    raise UsageError(f"fleet {fleet!r} has no IOC {name!r}", name, f"running IOCs: {names}")


def logs_of(backend: Backend, inst: Instance, ioc: str, tail: int | None = None) -> list[str]:
    """IOC `ioc`'s log lines: all of its own instance's; in a pack, the lines that member printed (each
    starts `[IOC] `) and the pack's own (`[pack NAME] `: start, crash)."""
    if not inst.members or ioc == inst.name:
        return backend.logs(inst, tail)
    lines = [line for line in backend.logs(inst, None) if belongs(line, ioc, inst.name)]
    return lines[-tail:] if tail else lines


def follow_of(backend: Backend, inst: Instance, ioc: str):
    """`logs --follow` of one IOC: its instance's new lines, a pack's filtered to that member."""
    for line in backend.follow(inst):
        if not inst.members or ioc == inst.name or belongs(line, ioc, inst.name):
            yield line


def belongs(line: str, ioc: str, pack: str) -> bool:
    """Whether a pack's log line is IOC `ioc`'s (or the pack's own); the pack program prefixes every line."""
    return line.startswith((f"[{ioc}] ", f"[pack {pack}] "))


def _event(progress):
    if progress is None:
        return None
    return lambda event: progress(getattr(event, "message", str(event)))


def _emit(progress, text: str) -> None:
    if progress is not None:
        progress(text)


@contextmanager
def _interrupt_on_sigterm():
    """Turn SIGTERM into an interrupt (`Terminated`, a KeyboardInterrupt) for the duration, so `up` rolls
    back the same way for both; the CLI then exits 143 (128+15) rather than Ctrl-C's 130."""
    from orchestrator.errors import Terminated

    def handler(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
