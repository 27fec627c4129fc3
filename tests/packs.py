"""Pack descriptions for tests: the IOCFLEET_PACK JSON the orchestrator gives the caproto program."""

from __future__ import annotations

import json
import os
from pathlib import Path

PROGRAM = Path(__file__).resolve().parents[1] / "ioc_images" / "caproto" / "ioc.py"


def ioc_json(name: str, pv_names: list[str], prefix: str = "") -> str:
    """An IOC serving float PVs `pv_names` (values 0) under `prefix`."""
    return json.dumps({"name": name, "prefix": prefix,
                       "pvs": [{"name": pv, "type": "float", "value": 0.0} for pv in pv_names]})


def member(name: str, env: dict[str, str], pv_names: list[str], prefix: str = "") -> dict:
    """One member: the EPICS_* `env` it would run alone with, plus its IOC description."""
    return {"name": name, "env": {**env, "IOCFLEET_IOC": ioc_json(name, pv_names, prefix)}}


def pack_env(pack: str, members: list[dict], base: dict[str, str] | None = None) -> dict[str, str]:
    """The program's environment: `base` (default: this process's, EPICS_* removed) plus IOCFLEET_PACK."""
    env = {k: v for k, v in (base if base is not None else os.environ).items() if not k.startswith("EPICS_")}
    env.update({"IOCFLEET_PACK": json.dumps({"pack": pack, "members": members}), "PYTHONUNBUFFERED": "1"})
    return env
