"""Command services: each CLI command that does more than one call finds its one function here."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import UsageError


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
    from orchestrator.spec import model as spec

    try:
        return spec.load(path).name
    except Exception:  # noqa: BLE001 - an invalid file may still carry its name
        import yaml

        if not path.is_file():  # a pipe or device: spec.load said why; reading it would block
            raise
        try:
            data = yaml.safe_load(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("fleet"), str):
                return data["fleet"]
        except (OSError, yaml.YAMLError):
            pass
        raise


def _checked_name(name: str, where: str) -> str:
    """A fleet name given on the command line, held to the fleet file's rule: it names state files and
    locks, so `../x` or `/etc/x` must never become a path outside the state directory."""
    from orchestrator.spec.fields import NAME_RE

    if not NAME_RE.match(name):
        what = f"{name!r} is not a fleet name" + (" and no such file exists" if where == "FLEET" else "")
        raise UsageError(what, where,
                         "give an existing fleet file, or a name of 1-63 letters, digits, _ . - "
                         "starting with a letter or digit")
    return name


def up_fleet(fleet_file: str, strategy, interface, backend_name: str, timeout: float, dry_run: bool,
             force: bool, keep_on_failure: bool, progress=None, fanout: str | None = None):
    """`iocfleet up`: load the fleet file, pick the backend, then `up_spec`; `fanout` overrides network.fanout."""
    import dataclasses

    from orchestrator.spec import model as spec
    from orchestrator.run.backends import select

    fleet = spec.load(fleet_file)
    if fanout is not None:
        fleet = dataclasses.replace(fleet, network=dataclasses.replace(fleet.network, fanout=fanout))
    backend = select(backend_name)
    if progress:
        progress(f"backend: {backend.name}")
    return up_spec(fleet, backend, strategy, interface, timeout, dry_run, force, keep_on_failure, progress)


def up_spec(fleet, backend, strategy=None, interface=None, timeout: float = 60.0, dry_run: bool = False,
            force: bool = False, keep_on_failure: bool = False, progress=None):
    """Under the fleet's lock: plan on this host for `backend`'s uid, then diff, start and wait (lifecycle.up)."""
    from orchestrator.run import lifecycle
    from orchestrator.plan.onhost import plan_spec
    from orchestrator.run.statedir import fleet_lock

    with fleet_lock(fleet.name, "up"):
        own = own_pids(backend.instances(fleet.name))
        planned = plan_spec(fleet, strategy, interface, ioc_uid=backend.ioc_uid, own_pids=own)
        return lifecycle.up(planned, backend, timeout=timeout, force=force, keep_on_failure=keep_on_failure,
                            dry_run=dry_run, progress=progress)


def down_fleet(backend, fleet_name: str):
    """Under the fleet's lock: remove every instance of the fleet."""
    from orchestrator.run import lifecycle
    from orchestrator.run.statedir import fleet_lock

    with fleet_lock(fleet_name, "down"):
        return lifecycle.down(backend, fleet_name)


def own_pids(instances) -> frozenset[int]:
    """The pids of a fleet's running instances and of their children (container init, supervisors)."""
    import psutil

    pids = set()
    for inst in instances:
        if not inst.pid:
            continue
        pids.add(inst.pid)
        try:
            proc = psutil.Process(inst.pid)
            pids.update(p.pid for p in proc.children(recursive=True))
            if proc.parent():
                pids.add(proc.parent().pid)
        except psutil.Error:
            continue
    return frozenset(pids)
