"""Load the fleet file's EPICS databases (IOCFLEET_DB) into a softioc IOC, before iocInit.

IOCFLEET_DB is a JSON list of {"file": PATH, "macros": {NAME: VALUE}}; the orchestrator read each file
already (the plan knows every record name), so a failure here means the file changed since.
"""

from __future__ import annotations

import json
import os
from typing import Mapping


def loads(environ: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(file, folder, "A=1,B=2") for each database, in order."""
    out = []
    for item in json.loads(environ.get("IOCFLEET_DB") or "[]"):
        macros = ",".join(f"{k}={v}" for k, v in sorted(item.get("macros", {}).items()))
        out.append((os.path.basename(item["file"]), os.path.dirname(item["file"]) or ".", macros))
    return out


def load_databases(softioc_module, environ: Mapping[str, str]) -> int:
    """dbLoadDatabase every database of IOCFLEET_DB (the folder is the include path); the count loaded."""
    items = loads(environ)
    for file, folder, macros in items:
        softioc_module.dbLoadDatabase(file, folder, macros or None)
    return len(items)
