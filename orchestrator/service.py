"""Command services: each CLI command that does more than one call finds its one function here."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError


def fleet_name_of(fleet: str | None, fleet_name: str | None) -> str:
    """The fleet's name from `--fleet-name`, or from the file (only its `fleet:` key, so a broken or
    changed file still names the fleet to stop)."""
    if fleet_name:
        return fleet_name
    if not fleet:
        raise UsageError("which fleet?", "FLEET", "give the fleet file or --fleet-name NAME")
    path = Path(fleet)
    if not path.exists():
        return fleet  # a bare name: `iocfleet status demo`
    from . import spec

    try:
        return spec.load(path).name
    except Exception:  # noqa: BLE001 - an invalid file may still carry its name
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("fleet"), str):
                return data["fleet"]
        except (OSError, yaml.YAMLError):
            pass
        raise


def up_fleet(fleet_file: str, strategy, interface, backend_name: str, timeout: float, dry_run: bool,
             force: bool, keep_on_failure: bool, progress=None):
    """Plan on this host for the chosen backend, then diff, start and wait (see lifecycle.up)."""
    from . import lifecycle, spec
    from .backends import select
    from .fleetplan import plan_spec
    from .statedir import fleet_lock

    fleet = spec.load(fleet_file)
    backend = select(backend_name)
    if progress:
        progress(f"backend: {backend.name}")
    with fleet_lock(fleet.name, "up"):
        own = own_pids(backend.instances(fleet.name))
        planned = plan_spec(fleet, strategy, interface, ioc_uid=backend.ioc_uid, own_pids=own)
        return lifecycle.up(planned, backend, timeout=timeout, force=force, keep_on_failure=keep_on_failure,
                            dry_run=dry_run, progress=progress)


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
