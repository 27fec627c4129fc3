"""Serve the PVs of one iocfleet IOC with pythonSoftIOC (EPICS base's rsrv CA server).

Reads the IOC from IOCFLEET_IOC / IOCFLEET_IOC_FILE (see docs/images.md). Network settings are the
standard EPICS_* variables, read by EPICS base itself. With a terminal on stdin it serves the iocsh
console (iocfleet_ioc/console.py: `iocfleet attach` / `exec`); runs without the pvAccess server, whose
automatic beacons would go to every interface.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _candidate in (_HERE, _HERE.parent / "common"):
    if (_candidate / "iocfleet_ioc").is_dir():
        sys.path.insert(0, str(_candidate))
        break

import asyncio  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from iocfleet_ioc import report  # noqa: E402
from iocfleet_ioc.spec import IocSpec, PvSpec  # noqa: E402
from iocfleet_ioc.updates import run_updates  # noqa: E402

RUNTIME = "softioc"
READY_TIMEOUT_S = 5.0


def make_record(builder, pv: PvSpec, name: str):
    """The EPICS record serving one declared PV: an output record if clients may write it."""
    out = pv.writable
    if pv.is_array:
        dtype = np.float64 if pv.type == "float" else np.int32
        make = builder.WaveformOut if out else builder.WaveformIn
        return make(name, initial_value=np.asarray(pv.value, dtype=dtype))
    if pv.type == "float":
        make = builder.aOut if out else builder.aIn
        return make(name, initial_value=pv.value, PREC=3)
    if pv.type == "int":
        make = builder.longOut if out else builder.longIn
        return make(name, initial_value=pv.value)
    if pv.type == "str":
        make = builder.stringOut if out else builder.stringIn
        return make(name, initial_value=pv.value)
    make = builder.mbbOut if out else builder.mbbIn
    return make(name, *pv.enum_strings, initial_value=pv.value)


def build_records(builder, spec: IocSpec) -> dict:
    """Every record of the IOC, standard PVs included, keyed by the PV's short name."""
    records = {pv.name: make_record(builder, pv, spec.full_name(pv.name)) for pv in spec.pvs}
    legacy = spec.legacy_pvs()  # where iocStats serves HEARTBEAT/UPTIME itself, no record of ours
    if "HEARTBEAT" in legacy:
        records["HEARTBEAT"] = builder.longIn(spec.full_name("HEARTBEAT"), initial_value=0)
    if "UPTIME" in legacy:
        records["UPTIME"] = builder.aIn(spec.full_name("UPTIME"), initial_value=0.0, PREC=1, EGU="s")
    return records


def load_iocstats(softioc, spec: IocSpec) -> None:
    """devIocStats' ioc.template under the IOC's iocStats name (pythonSoftIOC ships both); before iocInit."""
    if spec.iocstats:
        softioc.devIocStats(spec.iocstats)


def _wait_for_listener(deadline_s: float) -> list[str]:
    """rsrv binds from its own threads after iocInit returns; wait (bounded) until a TCP listener shows."""
    end = time.monotonic() + deadline_s
    sockets = report.bound_sockets()
    while not any(s.startswith("tcp") for s in sockets) and time.monotonic() < end:
        time.sleep(0.05)
        sockets = report.bound_sockets()
    return sockets


def main() -> None:
    spec = report.load_or_exit(os.environ, RUNTIME)
    warning = report.ensure_array_bytes(spec, os.environ)
    if warning:
        print(f"iocfleet-ioc[{RUNTIME}]: warning: {warning}", file=sys.stderr, flush=True)

    # Imported after the environment is final: EPICS base reads EPICS_* when its libraries start.
    from softioc import asyncio_dispatcher, builder, softioc

    dispatcher = asyncio_dispatcher.AsyncioDispatcher()
    records = build_records(builder, spec)
    builder.LoadDatabase()
    from iocfleet_ioc.dbload import load_databases

    load_databases(softioc, os.environ)  # the fleet file's .db files (IOCFLEET_DB), before iocInit
    load_iocstats(softioc, spec)
    softioc.iocInit(dispatcher, enable_pva=False)

    def write(name: str, value) -> None:
        if name in records:  # HEARTBEAT/UPTIME may be iocStats records, which update themselves
            records[name].set(value)

    asyncio.run_coroutine_threadsafe(run_updates(spec, write), dispatcher.loop)
    print(report.serving_line(RUNTIME, spec, _wait_for_listener(READY_TIMEOUT_S), os.environ), flush=True)
    serve_console_or_wait(softioc, spec)


def serve_console_or_wait(softioc, spec: IocSpec) -> None:
    """With a terminal on stdin (docker tty, the supervisor's pty): the iocsh console until SIGTERM;
    without one: wait for SIGTERM/SIGINT, as before."""
    if sys.stdin is not None and sys.stdin.isatty():
        from iocfleet_ioc import console

        try:
            console.serve(console.iocsh_runner(), os.environ.get("IOCSH_PS1") or f"{spec.name} > ")
        except SystemExit:
            softioc.safeEpicsExit(0)
    softioc.non_interactive_ioc()


if __name__ == "__main__":
    main()
