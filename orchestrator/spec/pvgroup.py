"""Ask a user's caproto PVGroup which PVs it declares, in a subprocess, before anything is launched.

The group is imported and instantiated (with prefix "" and the fleet file's kwargs) in a child Python,
so user code never runs inside iocfleet itself, and a crash, a hang or a print cannot break planning.
"""

from __future__ import annotations

import json
import subprocess
import sys

TIMEOUT_S = 30.0

# Runs in the child: argv = [python_path or "", "pkg.mod:Class", kwargs JSON]. Prints one JSON line.
_PROBE = r"""
import importlib, json, sys
path, target, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if path:
    sys.path.insert(0, path)
module_name, _, class_name = target.partition(":")
try:
    module = importlib.import_module(module_name)
except Exception as exc:
    print(json.dumps({"error": f"cannot import {module_name}: {type(exc).__name__}: {exc}"})); sys.exit(0)
group_class = getattr(module, class_name, None)
if group_class is None:
    print(json.dumps({"error": f"module {module_name} has no {class_name}"})); sys.exit(0)
from caproto.server import PVGroup
if not (isinstance(group_class, type) and issubclass(group_class, PVGroup)):
    print(json.dumps({"error": f"{target} is not a caproto PVGroup class"})); sys.exit(0)
try:
    group = group_class(prefix="", **kwargs)
except Exception as exc:
    print(json.dumps({"error": f"{target}(prefix='', **kwargs) failed: {type(exc).__name__}: {exc}"})); sys.exit(0)
print(json.dumps({"pvs": sorted(group.pvdb)}))
"""


class GroupError(ValueError):
    """The group could not be asked: why, in one line."""


def declared_pvs(module: str, python_path: str | None, kwargs: dict, python: str | None = None) -> tuple[str, ...]:
    """The PV names (without prefix) that `module` ("pkg.mod:Class") declares with `kwargs`."""
    argv = [python or sys.executable, "-c", _PROBE, python_path or "", module, json.dumps(kwargs)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env=_child_env())
    except subprocess.TimeoutExpired:
        raise GroupError(f"asking {module} for its PVs took over {TIMEOUT_S:g} s")
    answer = next((line for line in reversed(done.stdout.splitlines()) if line.startswith("{")), None)
    if answer is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GroupError(f"asking {module} for its PVs failed (exit {done.returncode}): {tail[:200]}")
    data = json.loads(answer)
    if "error" in data:
        raise GroupError(data["error"][:300])
    return tuple(data["pvs"])


def _child_env() -> dict:
    import os

    # No CA traffic is needed to list a group's PVs; keep the child away from any network anyway.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update({"EPICS_CA_AUTO_ADDR_LIST": "NO", "EPICS_CA_ADDR_LIST": "127.0.0.1",
                "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env
