"""Serve a user's caproto PVGroup (IOCFLEET_GROUP) with the fleet's network plan.

IOCFLEET_GROUP is JSON {"module": "pkg.mod:Class", "python_path": FOLDER or null, "kwargs": {...},
"prefix": "BL7:"}. Addresses and ports come from the EPICS_* variables, read by caproto itself.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Mapping

from iocfleet_ioc.signals import run_until_signalled


def make_group(environ: Mapping[str, str]):
    """The user's group, instantiated with the IOC's prefix and kwargs."""
    data = json.loads(environ["IOCFLEET_GROUP"])
    if data.get("python_path"):
        sys.path.insert(0, data["python_path"])
    module_name, _, class_name = data["module"].partition(":")
    group_class = getattr(importlib.import_module(module_name), class_name)
    return group_class(prefix=data.get("prefix", ""), **data.get("kwargs", {}))


async def serve(environ: Mapping[str, str], context_class) -> None:
    """Serve the group until SIGTERM or SIGINT; prints one `serving` line once bound."""
    group = make_group(environ)
    data = json.loads(environ["IOCFLEET_GROUP"])

    async def startup(async_lib) -> None:
        print(f"iocfleet-ioc[caproto]: serving {len(group.pvdb)} PVs of {data['module']} "
              f"(prefix {data.get('prefix', '')!r})", flush=True)

    ctx = context_class(group.pvdb)
    await run_until_signalled(ctx, startup)
