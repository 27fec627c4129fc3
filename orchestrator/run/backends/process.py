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

from orchestrator import host
from orchestrator.errors import IocfleetError, UsageError
from orchestrator.images.catalog import program_argv
from orchestrator.plan import identity
from orchestrator.plan.model import PlannedIOC
from orchestrator.run.instance import expand_pack, Instance, Member
from orchestrator.run.statedir import fleet_dir, make_dir, state_root
from orchestrator.plan.identity import REPEATER
from orchestrator.run import statedir
from orchestrator.spec.fields import valid_name

STOP_GRACE = 5.0
# An IOC description larger than this goes to the IOC through a file (IOCFLEET_IOC_FILE): Linux refuses
# one environment string over 128 KiB (E2BIG at exec; ~1,500 PVs), issue 13 class 4.
DESCRIPTION_IN_FILE = 32 * 1024
DESCRIPTION_VARS = ("IOCFLEET_IOC", "IOCFLEET_PACK")  # an IOC's or a pack's description (issue 14)


def description_via_file(env: dict, path: Path) -> dict:
    """`env` with a large IOCFLEET_IOC (or a pack's IOCFLEET_PACK) moved into `path` (written 0600, never
    through a symlink); the program reads the variable's _FILE twin."""
    var = next((v for v in DESCRIPTION_VARS if v in env), None)
    if var is None or len(env[var]) <= DESCRIPTION_IN_FILE:
        return env
    statedir.write_atomic(path, env[var])
    out = {k: v for k, v in env.items() if k != var}
    out[f"{var}_FILE"] = str(path)
    return out


class ProcessBackend:
    """IOCs as supervised local processes."""

    name = "process"

    def __init__(self, environ: dict | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.ioc_uid = os.getuid()

    # -- finding ---------------------------------------------------------------------------------
    def instances(self, fleet: str | None = None, details: bool = True) -> list[Instance]:
        root = state_root(self._environ) / "fleets"
        for directory in (root.parent, root, fleet_dir(fleet, self._environ) if fleet else None):
            if directory is not None and (directory.exists() or directory.is_symlink()):
                statedir.check_dir(directory)  # another user's or a world-writable state dir is refused
        if fleet:
            dirs = [fleet_dir(fleet, self._environ)]
        else:
            dirs = sorted(p for p in root.glob("*") if p.is_dir() and not p.is_symlink() and statedir.fleet_name_ok(p.name))
        found = []
        for directory in dirs:
            if directory.is_symlink():
                continue
            for path in sorted(directory.glob("*.json")):
                if not valid_name(path.stem):
                    continue
                try:
                    data = json.loads(statedir.read_text(path))
                except (OSError, ValueError):
                    continue  # a file being replaced right now; the next look sees it
                found.append(self._instance(checked_record(data, directory.name, path.stem), details))
        return found

    def _instance(self, data: dict, details: bool = True) -> Instance:
        supervisor_alive = host.alive(data.get("supervisor_pid"), data.get("supervisor_created"))
        state = data.get("state", "created")
        pid = data.get("pid")
        if not supervisor_alive and state != "exited":
            state, pid = "exited", None  # the supervisor was killed: nothing runs any more
        elif state == "running" and not host.alive(pid):
            state = "restarting"
        return Instance(fleet=data["fleet"], name=data["name"], role=data["role"], runtime=data["runtime"],
                        state=state, plan_hash=data["plan_hash"], exit_code=data.get("exit_code"),
                        restarts=data.get("restarts", 0), pid=pid if state == "running" else None,
                        tcp_port=host.listening_port(pid) if state == "running" and details else None,
                        members=tuple(data.get("members", ())))

    def members(self, fleet: str | None = None) -> list:
        """Every instance of this user's process fleets with its planned environment (host-wide view)."""
        root = state_root(self._environ) / "fleets"
        dirs = [root / fleet] if fleet else sorted(p for p in root.glob("*") if p.is_dir())
        out = []
        for directory in dirs:
            for path in sorted(directory.glob("*.json")):
                try:  # state files are untrusted (issue 13): read without following links, schema-checked
                    data = checked_record(json.loads(statedir.read_text(path)), directory.name, path.stem)
                    inst = self._instance(data, details=False)
                except (OSError, ValueError, KeyError, IocfleetError):
                    continue
                out += expand_pack(Member("process", inst.fleet, inst.name, inst.role, inst.runtime, inst.state,
                                          inst.pid, None, dict(data.get("env") or {}), None))
        return out

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
        return self._spawn(fleet, ioc.name, "ioc", ioc.runtime, plan_hash, program_argv(ioc.runtime),
                           ioc.env_dict(), ioc.restart, ioc.members)

    def console(self, instance: Instance):
        """A connected socket to the IOC's console, which its supervisor keeps (softioc IOCs)."""
        import socket

        state = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.json"
        try:
            name = json.loads(state.read_text()).get("console")
        except (OSError, ValueError):
            name = None
        if not name:
            raise UsageError(f"IOC {instance.name!r} has no console", f"fleet {instance.fleet}",
                             "it was started before consoles existed: `iocfleet restart FLEET IOC`")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect("\0" + name)
        except OSError as exc:
            sock.close()
            raise UsageError(f"the console of {instance.name!r} does not answer: {exc.strerror}",
                             f"fleet {instance.fleet}", "check `iocfleet status`; restart the IOC") from None
        return sock

    def start_repeater(self, fleet: str, port: int) -> Instance:
        return self._spawn(fleet, identity.REPEATER, identity.REPEATER_ROLE, identity.REPEATER_RUNTIME,
                           identity.REPEATER_PLAN, identity.repeater_argv(sys.executable),
                           identity.repeater_env(port), "always")

    def start_name_server(self, fleet: str, ns, plan_hash: str, names_dir: str) -> Instance:
        """The fleet's name server (R15) as a supervised process, restarted whenever it exits."""
        from orchestrator.plan.nameserver import INSTANCE
        from orchestrator.run.nameserver import NAMES_FILE, ROLE, program_argv

        argv = program_argv(sys.executable, os.path.join(names_dir, NAMES_FILE), ns)
        return self._spawn(fleet, INSTANCE, ROLE, "caproto", plan_hash, argv, {}, "always")

    def _spawn(self, fleet, name, role, runtime, plan_hash, argv, env, restart, members=()) -> Instance:
        directory = make_dir(fleet_dir(fleet, self._environ))
        state, log = directory / f"{name}.json", directory / f"{name}.log"
        record = {"fleet": fleet, "name": name, "role": role, "runtime": runtime, "plan_hash": plan_hash,
                  "argv": argv, "env": env, "restart": restart, "state": "created", "log": str(log)}
        if members:
            record["members"] = list(members)
        statedir.write_atomic(state, json.dumps(record, indent=1))
        child_env = {k: v for k, v in self._environ.items() if not k.startswith(("EPICS_", "IOCFLEET_IOC"))}
        child_env.update(description_via_file(env, directory / f"{name}.ioc.json"))
        child_env["PYTHONUNBUFFERED"] = "1"
        console = []
        if role == "ioc" and runtime == "softioc":
            import hashlib

            console = ["--console", "iocfleet-console-" + hashlib.sha256(str(state).encode()).hexdigest()[:20]]
        with os.fdopen(statedir.open_file(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as out:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "orchestrator.run.supervise", "--state", str(state), "--restart",
                     restart, *console, "--", *argv],
                    env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:  # E2BIG from an environment too large, ENOMEM, ...
                raise UsageError(f"cannot start {name}: {exc.strerror or exc}", f"iocs {name}",
                                 "make its env smaller (large data belongs in a file)") from exc
        created = host.started_at(proc.pid)
        _merge(state, supervisor_pid=proc.pid, supervisor_created=created)
        return self._instance(checked_record(json.loads(statedir.read_text(state)), fleet, name))

    # -- stopping and inspecting -----------------------------------------------------------------
    def remove(self, instance: Instance) -> None:
        directory = fleet_dir(instance.fleet, self._environ)
        if not valid_name(instance.name):
            return
        state = directory / f"{instance.name}.json"
        try:
            data = checked_record(json.loads(statedir.read_text(state)), instance.fleet, instance.name)
        except (OSError, ValueError):
            data = {}
        _terminate(data.get("supervisor_pid"), data.get("supervisor_created"), state)
        for path in (state, directory / f"{instance.name}.log", directory / f"{instance.name}.ioc.json"):
            path.unlink(missing_ok=True)  # unlinks a planted symlink itself, never its target
        try:
            directory.rmdir()
        except OSError:
            pass  # other instances still there

    def restart(self, instance: Instance) -> Instance:
        state = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.json"
        try:
            data = checked_record(json.loads(statedir.read_text(state)), instance.fleet, instance.name)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the state of {instance.name}: {exc}", str(state),
                             "`iocfleet down` then `iocfleet up` the fleet") from exc
        if not data.get("argv") or data["runtime"] == "invalid":
            raise UsageError(f"the state file of {instance.name} is not iocfleet's", str(state),
                             "`iocfleet down` then `iocfleet up` the fleet")
        _terminate(data.get("supervisor_pid"), data.get("supervisor_created"), state)
        return self._spawn(data["fleet"], data["name"], data["role"], data["runtime"], data["plan_hash"],
                           data["argv"], data["env"], data["restart"], data.get("members", ()))

    def logs(self, instance: Instance, tail: int | None = 20) -> list[str]:
        path = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.log"
        try:
            lines = _tail_text(path).splitlines()
        except OSError:
            return []
        return lines[-tail:] if tail else lines

    def follow(self, instance: Instance) -> Iterator[str]:
        path = fleet_dir(instance.fleet, self._environ) / f"{instance.name}.log"
        with os.fdopen(statedir.open_file(path, os.O_RDONLY), errors="replace") as handle:
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


def _terminate(pid: int | None, created: float | None, state: Path | None = None) -> None:
    """SIGTERM the supervisor's process group, wait, then SIGKILL what is left; only when `pid` is the very
    supervisor iocfleet recorded: same start time, our supervise module on its command line for this state
    file, and leader of its own process group (a planted or stale state file names any pid)."""
    if not _ours(pid, created, state):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline and host.alive(pid, created):
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _ours(pid, created, state: Path | None) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or not isinstance(created, (int, float)):
        return False
    if not host.alive(pid, created):
        return False
    cmdline = host.own_group_leader(pid)
    if cmdline is None:
        return False
    return "orchestrator.run.supervise" in cmdline and (state is None or str(state) in cmdline)


def _tail_text(path: Path, limit: int = 4_000_000) -> str:
    fd = statedir.open_file(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(fd)


ROLES = ("ioc", "repeater", "nameserver")  # the name server (R15) is a supervised instance too
STATES = ("created", "running", "restarting", "exited")


def checked_record(data, fleet: str, name: str) -> dict:
    """A state file's content held to the schema iocfleet writes (issue 13, class 3: it is untrusted).

    `fleet` and `name` come from the file's place, never from its content; a field of the wrong type or
    value makes the whole record an `exited` instance with nothing to signal, so `down` still removes it.
    """
    def is_int(value, low=0):
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    ok = (isinstance(data, dict) and data.get("fleet") == fleet and data.get("name") == name
          and data.get("role") in ROLES and isinstance(data.get("runtime"), str)
          and isinstance(data.get("plan_hash"), str) and data.get("state", "created") in STATES
          and all(data.get(k) is None or is_int(data[k], 2) for k in ("pid", "supervisor_pid"))
          and (data.get("supervisor_created") is None or isinstance(data["supervisor_created"], (int, float)))
          and (data.get("exit_code") is None or is_int(data["exit_code"]))
          and is_int(data.get("restarts", 0))
          and isinstance(data.get("argv", []), list) and all(isinstance(a, str) for a in data.get("argv", []))
          and isinstance(data.get("env", {}), dict)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in data.get("env", {}).items())
          and data.get("restart", "no") in ("no", "on-failure", "always")
          and isinstance(data.get("members", []), list)
          and all(isinstance(m, str) and valid_name(m) for m in data.get("members", [])))
    if ok:
        return data
    role = {REPEATER: "repeater", "ca-nameserver": "nameserver"}.get(name, "ioc")
    return {"fleet": fleet, "name": name, "role": role, "runtime": "invalid",
            "plan_hash": "invalid", "state": "exited", "exit_code": None, "restarts": 0}
