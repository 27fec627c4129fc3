"""One CA repeater for the host (R12): use the one that holds UDP 5065, start one only if none does.

iocfleet records a repeater it started (host directory, `repeater.json`: backend, container or supervisor,
the fleet that needed it). `release` stops it only when no fleet on the host still runs, and never a
repeater it did not start. Both decisions run under a host-level lock, so concurrent `up`/`down` of two
fleets cannot both start one, or stop one the other just chose to use.

UDP 5065 belongs to a network namespace, not to the machine: the record and the lock are per namespace
(`repeater-<netns inode>.json`), and docker fleets (host networking) count as running only in the
namespace of pid 1.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import RefusedError
from orchestrator.hostmodel import CA_REPEATER_PORT
from orchestrator.run.statedir import make_dir, state_root

HOST_FLEET = "_host"  # the fleet label of the host repeater; `_` cannot start a fleet name
LOCK_WAIT = 120.0
BIND_WAIT = 30.0


def host_dir(environ=None) -> Path:
    """$IOCFLEET_HOST_DIR, else /run/iocfleet for root, else the state directory's `host/`."""
    env = os.environ if environ is None else environ
    if env.get("IOCFLEET_HOST_DIR"):
        return Path(env["IOCFLEET_HOST_DIR"])
    if os.geteuid() == 0:
        return Path("/run/iocfleet")
    return state_root(env) / "host"


def netns_id(pid: int | str = "self") -> str:
    """The inode of a process's network namespace ("?" when it cannot be read)."""
    from orchestrator import host

    return host.netns_id(pid)


@contextmanager
def host_lock(environ=None, wait: float = LOCK_WAIT):
    """The host-level lock around the repeater decision (blocks up to `wait` seconds)."""
    path = make_dir(host_dir(environ)) / f"repeater-{netns_id()}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RefusedError("the host's repeater lock is busy", str(path),
                                       "another iocfleet up/down holds it; retry when it has finished")
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def record_path(environ=None) -> Path:
    return host_dir(environ) / f"repeater-{netns_id()}.json"


def read_record(environ=None) -> dict | None:
    try:
        data = json.loads(record_path(environ).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holder_pids(port: int = CA_REPEATER_PORT) -> list[int]:
    """Pids holding UDP `port` right now (empty: nobody)."""
    from orchestrator import host

    return host.udp_holder_pids(port)


def ensure(backend, fleet: str, port: int = CA_REPEATER_PORT, environ=None, progress=None) -> dict:
    """Make sure a repeater holds UDP `port`: the existing one, or one iocfleet starts (and records).

    Returns what was decided: {"provider": "existing" | "iocfleet", "started": bool, ...}.
    """
    with host_lock(environ):
        held = holder_pids(port)
        record = read_record(environ)
        if held:
            _say(progress, f"CA repeater: UDP {port} is held already"
                 + (f" (iocfleet's, started for fleet {record['started_by']})" if _alive(record) else
                    f" (pid {held[0]}), using it"))
            return {"provider": "existing", "started": False, "pids": held}
        inst = backend.start_repeater(HOST_FLEET, port)
        record = {"backend": backend.name, "started_by": fleet, "port": port, "container": inst.container,
                  "state_file": _state_file(backend, environ), "started_at": time.time(), "netns": netns_id()}
        if backend.name == "process":  # who to stop later, even if that state directory is gone by then
            data = _process_state(record)
            record.update(supervisor_pid=data.get("supervisor_pid"), supervisor_created=data.get("supervisor_created"))
        make_dir(host_dir(environ))
        record_path(environ).write_text(json.dumps(record, indent=1))
        _wait_bound(port)
        _say(progress, f"CA repeater: started one on UDP {port} ({backend.name}); `down` of the last fleet stops it")
        return {"provider": "iocfleet", "started": True, **record}


def release(environ=None, running_fleets=None) -> bool:
    """Stop the repeater iocfleet started, if no fleet on this host still runs; True when it stopped one."""
    with host_lock(environ):
        record = read_record(environ)
        if record is None:
            return False
        fleets = running_fleets() if running_fleets is not None else _running_fleets(environ)
        if fleets:
            return False
        _stop(record)
        record_path(environ).unlink(missing_ok=True)
        return True


def _running_fleets(environ=None) -> set[str]:
    """Fleets with a live IOC in this network namespace: docker ones (host networking: pid 1's namespace),
    this user's process fleets, and any supervised IOC process here, whatever its state directory."""
    from orchestrator.run.members import members

    here = netns_id()
    live = ("running", "restarting", "created")
    fleets = {m.fleet for m in members(environ)  # docker ones only in pid 1's namespace (members decides)
              if m.role == "ioc" and m.fleet != HOST_FLEET and m.state in live}
    return fleets | _supervised_fleets(here)


def _supervised_fleets(here: str) -> set[str]:
    """Fleets of supervised IOC processes in namespace `here` (other users' and other state directories too)."""
    from orchestrator import host

    out = set()
    for pid, cmd in host.processes_with_argument("orchestrator.run.supervise"):
        if "--state" not in cmd:
            continue
        try:
            path = cmd[cmd.index("--state") + 1]
            data = json.loads(Path(path).read_text())
        except (IndexError, OSError, ValueError):
            continue
        if data.get("role") == "ioc" and data.get("fleet") != HOST_FLEET and netns_id(pid) in (here, "?"):
            out.add(data.get("fleet"))
    return out


def _alive(record: dict | None) -> bool:
    if not record:
        return False
    if record.get("backend") == "process":
        from orchestrator import host

        return host.alive(record.get("supervisor_pid"), record.get("supervisor_created"))
    return bool(record.get("container"))


def _process_state(record: dict) -> dict:
    try:
        return json.loads(Path(record.get("state_file") or "").read_text())
    except (OSError, ValueError):
        return {}


def _stop(record: dict) -> None:
    """Stop exactly the recorded repeater: the container by id, or the supervisor by pid and start time."""
    if record.get("backend") == "docker" and record.get("container"):
        from orchestrator.run.backends import REPEATER, Instance
        from orchestrator.run.backends.docker import DockerBackend

        DockerBackend().remove(Instance(HOST_FLEET, REPEATER, "repeater", "caproto", "running", "repeater",
                                        container=record["container"]))
        return
    if record.get("backend") == "process":
        from orchestrator.run.backends.process import _terminate

        # the pid and start time recorded when it started: never another process that reused the pid
        _terminate(record.get("supervisor_pid"), record.get("supervisor_created"))
        state = Path(record.get("state_file") or "")
        if state.name:
            for path in (state, state.with_suffix(".log")):
                path.unlink(missing_ok=True)
            try:
                state.parent.rmdir()
            except OSError:
                pass


def _state_file(backend, environ=None) -> str | None:
    if backend.name != "process":
        return None
    from orchestrator.run.backends import REPEATER
    from orchestrator.run.statedir import fleet_dir

    env = getattr(backend, "_environ", None) or environ
    return str(fleet_dir(HOST_FLEET, env) / f"{REPEATER}.json")


def _wait_bound(port: int, wait: float = BIND_WAIT) -> None:
    """Until the new repeater holds the port, so the next fleet under the lock sees it (no fixed sleep)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not holder_pids(port):
        time.sleep(0.1)


def _say(progress, text: str) -> None:
    if progress is not None:
        progress(text)
