"""Run the real `iocfleet` command and CA clients as subprocesses, with explicit environments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

# What a client process may inherit besides its CA settings: enough to find Python and libraries.
_BASE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "DOCKER_HOST")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
    env.update(extra)
    return env


def iocfleet(*args: str, state: Path, check: bool = False, timeout: float = 300, input_env=None
             ) -> subprocess.CompletedProcess:
    """`iocfleet ARGS` with its own state directory; CA settings inherited are the suite's safe ones."""
    env = {**os.environ, "XDG_STATE_HOME": str(state), **(input_env or {})}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"iocfleet {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def iocfleet_json(*args: str, state: Path, **kw) -> dict:
    proc = iocfleet(*args, "--json", state=state, check=True, **kw)
    return json.loads(proc.stdout)


def write_fleet(path: Path, name: str, iocs: list[dict], **network) -> Path:
    path.write_text(yaml.safe_dump({"fleet": name, "network": {"interface": "lo", **network}, "iocs": iocs},
                                   sort_keys=False))
    return path


# pyepics (libca) reads every PV named on the command line and prints {name: value-or-null} as JSON.
PYEPICS_READ = r"""
import json, sys
import epics
out = {}
for name in sys.argv[1:]:
    value = epics.caget(name, timeout=5.0, use_monitor=False)
    out[name] = value.tolist() if hasattr(value, "tolist") else value
print(json.dumps(out))
"""


def pyepics_read(names: list[str], client_env: dict[str, str], argv_prefix: list[str] = (),
                 timeout: float = 120) -> dict:
    """Read `names` with pyepics in a fresh process whose only CA settings are `client_env`."""
    env = base_env(**client_env)
    proc = subprocess.run([*argv_prefix, sys.executable, "-c", PYEPICS_READ, *names], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def labelled_containers(fleet: str) -> list[str]:
    """Ids of every container carrying the fleet's label, running or not."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=org.iocfleet.fleet={fleet}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return sorted(out.split())


def supervisors(state: Path, fleet: str) -> list:
    """Live supervisor processes of `fleet` under a test's state dir (found by their argv, not by name)."""
    import psutil

    marker = str(state / "iocfleet" / "fleets" / fleet)
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "orchestrator.run.supervise" in cmd and any(a.startswith(marker) for a in cmd):
            found.append(proc)
    return found


def start_up(path: Path, backend: str, state: Path, until: str, extra_env: dict | None = None
             ) -> tuple[subprocess.Popen, list[str]]:
    """Start `iocfleet up PATH` in the background and return once its progress printed a line starting
    with `until` (e.g. "starting cp2": it is in the middle of starting IOCs), with the lines seen so far."""
    env = {**os.environ, "XDG_STATE_HOME": str(state), **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "up", str(path), "--backend", backend],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(until):
            break
    return proc, seen
