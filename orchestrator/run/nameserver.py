"""Run a fleet's name server (strategy name-server, R15): its names file, its instance, its removal.

The names file is written from the plan by every `up` (atomically: the program re-reads it when it
changes, so adding or removing IOCs needs no restart of the name server) and removed by `down`. The
instance is a built-in runtime like the repeater: a supervised process (process backend) or a container
of the caproto image with host networking and the names directory mounted read-only (docker backend).
It is replaced only when its own settings (port, bind, program) change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from orchestrator.plan.nameserver import INSTANCE, NameServerPlan
from orchestrator.run.statedir import make_dir, state_root

NAMES_FILE = "names.json"
ROLE = "nameserver"


def names_dir(fleet: str, environ=None) -> Path:
    """Not under fleets/FLEET/: the process backend reads every *.json there as an instance."""
    return state_root(environ) / "nameservers" / fleet


def write_names(fleet: str, ns: NameServerPlan, environ=None) -> Path:
    """Write the names file atomically (a rename: the program never reads half a file); return its dir."""
    directory = make_dir(names_dir(fleet, environ))
    os.chmod(directory, 0o755)  # the container's user (not root) reads it through a bind mount
    tmp = directory / f".{NAMES_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(ns.names_file(fleet), indent=1))
    os.chmod(tmp, 0o644)
    os.replace(tmp, directory / NAMES_FILE)
    return directory


def forget(fleet: str, environ=None) -> None:
    shutil.rmtree(names_dir(fleet, environ), ignore_errors=True)


def settings_hash(ns: NameServerPlan, image: str = "") -> str:
    """What, when changed, means the name server process must be replaced (not its names: it re-reads)."""
    from orchestrator.images.build import ioc_images_root

    program = (ioc_images_root() / "common" / "iocfleet_ioc" / "nameserver.py").read_bytes()
    data = {"port": ns.port, "bind": ns.bind, "image": image, "program": hashlib.sha256(program).hexdigest()}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def program_argv(python: str, names_path: str, ns: NameServerPlan, program: str | None = None) -> list[str]:
    from orchestrator.images.build import ioc_images_root

    program = program or str(ioc_images_root() / "common" / "iocfleet_ioc" / "nameserver.py")
    return [python, program, "--names", names_path, "--port", str(ns.port), "--bind", ns.bind]


def ensure(backend, plan, actual, progress=None, environ=None) -> bool:
    """Make the fleet's name server match the plan; True if an instance was (re)started.

    A plan without a name server removes one left from an earlier plan (strategy changed)."""
    current = [i for i in actual if i.role == ROLE]
    ns = plan.name_server
    if ns is None:
        for inst in current:
            backend.remove(inst)
        if current:
            forget(plan.fleet, environ)
        return False
    directory = write_names(plan.fleet, ns, environ)
    wanted = settings_hash(ns, getattr(backend, "name", ""))
    if any(i.plan_hash == wanted and i.state in ("running", "restarting") for i in current):
        return False
    for inst in current:
        backend.remove(inst)
    if progress is not None:
        progress(f"starting {INSTANCE} on {ns.endpoint}")
    backend.start_name_server(plan.fleet, ns, wanted, str(directory))
    return True


def unresolved_over_tcp(plan, timeout: float = 15.0) -> list[str]:
    """Names the fleet's name server does not resolve over TCP (libca's EPICS_CA_NAME_SERVERS path), after
    retrying for up to `timeout` seconds; [] when every PV resolves. Readiness already proved the UDP path."""
    import time

    from orchestrator.doctor.nameservers import tcp_search

    ns = plan.name_server
    wanted = [n for ioc in plan.iocs for n in ioc.pv_names]
    deadline = time.monotonic() + timeout
    missing = wanted
    while True:
        _, _, found = tcp_search((ns.address, ns.port), missing, timeout=1.0)
        missing = [n for n in missing if n not in found]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(0.2)
