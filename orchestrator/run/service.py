"""Command services: each CLI command that does more than one call finds its one function here."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import SpecError, UsageError


def fleet_name_of(fleet: str | None, fleet_name: str | None) -> str:
    """The fleet's name from `--fleet-name`, or from the file (only its `fleet:` key, so a broken or
    changed file still names the fleet to stop)."""
    if fleet_name:
        return _checked_name(fleet_name, "--fleet-name")
    if not fleet:
        raise UsageError("which fleet?", "FLEET", "give the fleet file or --fleet-name NAME")
    path = Path(fleet)
    if not path.exists():
        return _checked_name(fleet, "FLEET")  # a bare name: `iocfleet status demo`
    from orchestrator import spec

    try:
        return spec.load(path).name
    except SpecError:  # an invalid file may still carry its name: only its `fleet:` key, held to the rule
        if not path.is_file():  # a pipe or device: spec.load said why; reading it would block
            raise
        name = _name_in(path)
        if name is None:
            raise
        return _checked_name(name, f"fleet: in {fleet}")


def _name_in(path: Path) -> str | None:
    """The `fleet:` value of a fleet file that failed validation, read with the same bounded loader."""
    from orchestrator.spec.fields import valid_name
    from orchestrator.spec.yamlsource import load_yaml

    try:
        if path.stat().st_size > 1_000_000:
            return None
        data = load_yaml(path.read_text(encoding="utf-8")).data
    except (OSError, ValueError, RecursionError, MemoryError, Exception):  # noqa: BLE001 - any unreadable file
        return None
    name = data.get("fleet") if isinstance(data, dict) else None
    return name if isinstance(name, str) and valid_name(name) else None


def _checked_name(name: str, where: str) -> str:
    """A fleet name given on the command line, held to the fleet file's rule: it names state files and
    locks, so `../x` or `/etc/x` must never become a path outside the state directory."""
    from orchestrator.spec.fields import NAME_RE

    if not NAME_RE.fullmatch(name):
        what = f"{name!r} is not a fleet name" + (" and no such file exists" if where == "FLEET" else "")
        raise UsageError(what, where,
                         "give an existing fleet file, or a name of 1-63 letters, digits, _ . - "
                         "starting with a letter or digit")
    return name


def up_fleet(fleet_file: str, strategy, interface, backend_name: str, timeout: float, dry_run: bool,
             force: bool, keep_on_failure: bool, progress=None, notice=None, fanout: str | None = None,
             pack: bool | None = None):
    """`iocfleet up`: load the fleet file, pick the backend, then `up_spec`; `fanout` overrides network.fanout,
    `pack` the file's `pack`.

    `notice(line)`: told once when the automatic backend falls back to local processes."""
    import dataclasses

    from orchestrator import spec
    from orchestrator.run.backends import select

    from orchestrator.run.statedir import state_root

    from orchestrator.plan.onhost import with_pack

    fleet = with_pack(spec.load(fleet_file), pack)
    state_root()  # a relative XDG_STATE_HOME or an empty HOME is refused before anything else
    if fanout is not None:
        fleet = dataclasses.replace(fleet, network=dataclasses.replace(fleet.network, fanout=fanout))
    backend = select(backend_name)
    if backend_name == "auto" and backend.name == "docker" and not dry_run:
        backend = images_or_processes(fleet, backend, progress, notice)
    if progress:
        progress(f"backend: {backend.name}")
    return up_spec(fleet, backend, strategy, interface, timeout, dry_run, force, keep_on_failure, progress)


def up_spec(fleet, backend, strategy=None, interface=None, timeout: float = 60.0, dry_run: bool = False,
            force: bool = False, keep_on_failure: bool = False, progress=None):
    """Under the fleet's lock: plan on this host for `backend`'s uid, then diff, start and wait (lifecycle.up)."""
    from orchestrator.run import lifecycle
    from orchestrator.plan.onhost import plan_spec
    from orchestrator.run.hostview import neighbour_findings
    from orchestrator.run.statedir import fleet_lock

    with fleet_lock(fleet.name, "up"):
        own = own_pids(backend.instances(fleet.name))
        planned = plan_spec(fleet, strategy, interface, ioc_uid=backend.ioc_uid, own_pids=own,
                            neighbours=neighbour_findings)
        result = lifecycle.up(planned, backend, timeout=timeout, force=force, keep_on_failure=keep_on_failure,
                              dry_run=dry_run, progress=progress)
        if not dry_run and result.ready:
            from orchestrator.run import netrecord

            netrecord.write(netrecord.NetRecord.of(planned.plan), netrecord.path_of(fleet.name))
        return result


def down_fleet(backend, fleet_name: str):
    """Under the fleet's lock: remove every instance of the fleet."""
    from orchestrator.run import lifecycle
    from orchestrator.run.statedir import fleet_lock

    from orchestrator.run import netrecord
    from orchestrator.run.repeater import release

    with fleet_lock(fleet_name, "down"):
        removed = lifecycle.down(backend, fleet_name)
        if not backend.instances(fleet_name, details=False):
            netrecord.remove(netrecord.path_of(fleet_name))
        release()  # the host repeater iocfleet started goes with the last fleet (R12)
        return removed


def fleet_findings(fleet_name: str, instances) -> list:
    """`status`: a running fleet whose interface moved since `up` (stale-fleet), from the kept record."""
    if not instances:
        return []
    from orchestrator import host
    from orchestrator.hostmodel import HostSnapshot
    from orchestrator.run import netrecord

    record = netrecord.read(netrecord.path_of(fleet_name))
    return netrecord.stale_findings(record, HostSnapshot(host.interfaces(), None))


def own_pids(instances) -> frozenset[int]:
    """The pids of a fleet's running instances and of their children (container init, supervisors)."""
    from orchestrator import host

    return frozenset(p for inst in instances if inst.pid for p in host.process_family(inst.pid, with_parent=True))


def readiness_now(fleet_file: str | None, backend) -> dict[str, dict]:
    """For `status FLEET-FILE`: each IOC's readiness mode and, from one probe pass now, how it is ready
    (`3/3 PVs read`, `server: TCP listener on port N`). Empty when no readable fleet file was given."""
    from orchestrator.plan.onhost import plan_file
    from orchestrator.run.readiness import wait_ready
    from orchestrator.run.serverup import listener_evidence

    if not fleet_file or not Path(fleet_file).is_file():
        return {}
    try:
        plan = plan_file(fleet_file, ioc_uid=backend.ioc_uid).plan
    except Exception:  # noqa: BLE001 - status must work with a broken or changed file: it just says less
        return {}
    report = wait_ready(plan, timeout=0.0, server_up=listener_evidence(backend, plan))
    return {i.name: {"readiness": i.mode, "ready": i.complete, "ready_by": i.how()} for i in report.iocs}


def images_or_processes(fleet, backend, progress=None, notice=None):
    """The automatic backend: Docker when the IOC images exist or can be built; for a fleet of built-in
    runtimes only, local processes when they cannot (no registry, no mmdebstrap), with one line saying
    why and how to get images. `--backend docker` never comes here: it fails with exit 4."""
    from orchestrator.images import ImageBuildError
    from orchestrator.images.build import build_images
    from orchestrator.run.backends.process import ProcessBackend

    if any(i.runtime not in ("caproto", "softioc") or i.image for i in fleet.iocs):
        return backend
    runtimes = sorted({i.runtime for i in fleet.iocs})
    events = (lambda e: progress(getattr(e, "message", str(e)))) if progress else None
    try:
        build_images(runtimes, progress=events)
    except ImageBuildError as exc:
        line = (f"no IOC images ({exc.what}); running on local processes instead — to get images: "
                f"{exc.fix or 'see docs/images.md'}, then `iocfleet images build` (docs/images.md)")
        if notice is not None:
            notice(line)
        return ProcessBackend()
    return backend


def ioc_uid_for(backend_name: str) -> int:
    """The uid the IOCs would run as on `backend_name` (`auto`: Docker's when an engine answers)."""
    from orchestrator.run.backends import select

    return select(backend_name).ioc_uid
