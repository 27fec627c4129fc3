"""The process backend: each IOC is a local process under a small supervisor, with the plan's environment.

The embedded default where no Docker Engine runs. State lives in $XDG_STATE_HOME/iocfleet/fleets/FLEET/
as one JSON file and one log per instance, so `status`, `logs` and `down` work from any later command,
even without the fleet file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from orchestrator.errors import UsageError
from orchestrator.plan.model import PlannedIOC
from orchestrator.run.statedir import fleet_dir, make_dir, state_root
from orchestrator.run.backends import REPEATER, Instance

STOP_GRACE = 5.0


class ProcessBackend:
    """IOCs as supervised local processes."""

    name = "process"

    def __init__(self, environ: dict | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.ioc_uid = os.getuid()

    # -- finding ---------------------------------------------------------------------------------
    def instances(self, fleet: str | None = None, details: bool = True) -> list[Instance]:
        root = state_root(self._environ) / "fleets"
        dirs = [root / fleet] if fleet else sorted(p for p in root.glob("*") if p.is_dir())
        found = []
        for directory in dirs:
            for path in sorted(directory.glob("*.json")):
                try:
                    found.append(self._instance(json.loads(path.read_text()), details))
                except (OSError, ValueError, KeyError):
                    continue  # a file being replaced right now; the next look sees it
        return found

    def _instance(self, data: dict, details: bool = True) -> Instance:
        supervisor_alive = _alive(data.get("supervisor_pid"), data.get("supervisor_created"))
        state = data.get("state", "created")
        pid = data.get("pid")
        if not supervisor_alive and state != "exited":
            state, pid = "exited", None  # the supervisor was killed: nothing runs any more
        elif state == "running" and not _alive(pid):
            state = "restarting"
        return Instance(fleet=data["fleet"], name=data["name"], role=data["role"], runtime=data["runtime"],
                        state=state, plan_hash=data["plan_hash"], exit_code=data.get("exit_code"),
                        restarts=data.get("restarts", 0), pid=pid if state == "running" else None,
                        tcp_port=_listening_port(pid) if state == "running" and details else None)

    # -- starting --------------------------------------------------------------------------------
    def prepare(self, iocs: list[PlannedIOC], progress=None) -> None:
        self.check_supported(iocs)

    def check_supported(self, iocs) -> None:
        """Refuse (exit 2, naming the IOC) what a local process cannot honour: images, users, commands, limits."""
        images = [i.name for i in iocs if i.runtime == "image"]
        if images:
            raise UsageError(f"IOC(s) {', '.join(images)} use runtime `image`, which needs containers",
                             "--backend process", "use --backend docker with a running Docker Engine")
        for ioc in iocs:
            ignored = [name for name, value in (("image", ioc.image), ("user", ioc.user), ("command", ioc.command),
                                                ("limits", ioc.limits.memory or ioc.limits.pids)) if value]
            if ignored:  # a process cannot honour them: refuse rather than run something else than asked
                raise UsageError(f"IOC {ioc.name} sets {', '.join(ignored)}, which only containers honour",
                                 "--backend process", f"use --backend docker, or remove {ignored[0]} from it")

    def start(self, fleet: str, ioc: PlannedIOC, plan_hash: str) -> Instance:
        from orchestrator.images.build import program_argv

        return self._spawn(fleet, ioc.name, "ioc", ioc.runtime, plan_hash, program_argv(ioc.runtime),
                           ioc.env_dict(), ioc.restart)

    def start_repeater(self, fleet: str, port: int) -> Instance:
        argv = [sys.executable, "-m", "caproto.commandline.repeater"]
        return self._spawn(fleet, REPEATER, "repeater", "caproto", "repeater",
                           argv, {"EPICS_CA_REPEATER_PORT": str(port)}, "always")

    def _spawn(self, fleet, name, role, runtime, plan_hash, argv, env, restart) -> Instance:
        directory = make_dir(fleet_dir(fleet, self._environ))
        state, log = directory / f"{name}.json", directory / f"{name}.log"
        record = {"fleet": fleet, "name": name, "role": role, "runtime": runtime, "plan_hash": plan_hash,
                  "argv": argv, "env": env, "restart": restart, "state": "created", "log": str(log)}
        state.write_text(json.dumps(record, indent=1))
        child_env = {k: v for k, v in self._environ.items() if not k.startswith("EPICS_")}
        child_env.update(env)
        child_env["PYTHONUNBUFFERED"] = "1"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.run.supervise", "--state", str(state), "--restart", restart,
                 "--", *argv],
                env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        created = _create_time(proc.pid)
        _merge(state, supervisor_pid=proc.pid, supervisor_created=created)
        return self._instance(json.loads(state.read_text()))

    # -- stopping and inspecting -----------------------------------------------------------------
    def remove(self, instance: Instance) -> None:
        directory = fleet_dir(instance.fleet, self._environ)
        state = directory / f"{instance.name}.json"
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            data = {}
        _terminate(data.get("supervisor_pid"), data.get("supervisor_created"))
        for path in (state, directory / f"{instance.name}.log"):
            path.unlink(missing_ok=True)
        try:
            directory.rmdir()
        except OSError:
            pass  # other instances still there

    def restart(self, instance: Instance) -> Instance:
        state = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.json"
        data = json.loads(state.read_text())
        _terminate(data.get("supervisor_pid"), data.get("supervisor_created"))
        return self._spawn(data["fleet"], data["name"], data["role"], data["runtime"], data["plan_hash"],
                           data["argv"], data["env"], data["restart"])

    def logs(self, instance: Instance, tail: int | None = 20) -> list[str]:
        path = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return lines[-tail:] if tail else lines

    def follow(self, instance: Instance) -> Iterator[str]:
        path = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.log"
        with open(path, errors="replace") as handle:
            while True:
                line = handle.readline()
                if line:
                    yield line.rstrip("\n")
                    continue
                if not path.exists():
                    return
                time.sleep(0.2)


def _merge(path: Path, **changes) -> None:
    from orchestrator.run.supervise import update

    update(path, **changes)


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int | None, created: float | None = None) -> bool:
    """Whether `pid` runs and is the same process (same start time) we recorded."""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(proc.create_time() - created) < 0.5
    except psutil.Error:
        return False


def _listening_port(pid: int | None) -> int | None:
    import psutil

    if not pid:
        return None
    try:
        ports = sorted(c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp4")
                       if c.status == psutil.CONN_LISTEN)
    except (psutil.Error, AttributeError):
        return None
    return ports[0] if ports else None


def _terminate(pid: int | None, created: float | None) -> None:
    """SIGTERM the supervisor's process group, wait, then SIGKILL what is left."""
    if not _alive(pid, created):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and _alive(pid, created):
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
