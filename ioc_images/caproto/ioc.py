"""Serve the PVs of one iocfleet IOC with caproto's asyncio server.

Reads the IOC from IOCFLEET_IOC / IOCFLEET_IOC_FILE (see docs/images.md); with IOCFLEET_PACK or
IOCFLEET_PACK_FILE it serves a pack of IOCs in this one process instead (iocfleet_ioc/pack.py). Network settings are the
standard EPICS_* variables, read by caproto itself: this program never sets an address or a port.
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
import functools  # noqa: E402
import os  # noqa: E402
from typing import Any, Callable, Mapping  # noqa: E402

import numpy as np  # noqa: E402
from caproto import (AccessRights, ChannelChar, ChannelData, ChannelDouble,  # noqa: E402
                     ChannelEnum, ChannelInteger, ChannelString)
from caproto.asyncio.server import Context  # noqa: E402

from iocfleet_ioc import iocstats, report  # noqa: E402
from iocfleet_ioc.signals import run_until_signalled  # noqa: E402
from iocfleet_ioc.spec import STANDARD_PVS, IocSpec, PvSpec  # noqa: E402
from iocfleet_ioc.updates import run_updates  # noqa: E402

RUNTIME = "caproto"
_CLASSES = {"float": ChannelDouble, "int": ChannelInteger, "str": ChannelString, "enum": ChannelEnum}
_READ_ONLY: dict[type, type] = {}


def _read_only(cls: type) -> type:
    """A subclass of `cls` that refuses client writes (simulated and standard PVs)."""
    if cls not in _READ_ONLY:
        def check_access(self, hostname, username):
            return AccessRights.READ
        _READ_ONLY[cls] = type(f"ReadOnly{cls.__name__}", (cls,), {"check_access": check_access})
    return _READ_ONLY[cls]


class ListeningContext(Context):
    """caproto's server, listening on its TCP port as soon as it is bound.

    caproto binds its TCP socket (with SO_REUSEADDR) at start-up but calls listen() only later, from the
    accept task. Two IOCs starting together on one server port can then both bind the free port, and
    the second one's listen() fails: it keeps running, advertises the other's port and serves nothing.
    Listening right after bind makes the second bind fail instead, and caproto moves to another port.
    """

    async def _bind_tcp_sockets_with_consistent_port_number(self, make_socket):
        async def bind_and_listen(interface, port):
            sock = await make_socket(interface, port)
            try:
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            return sock

        return await super()._bind_tcp_sockets_with_consistent_port_number(bind_and_listen)


def make_channel(pv: PvSpec) -> ChannelData:
    """The caproto channel serving one declared PV."""
    cls = _CLASSES[pv.type] if pv.writable else _read_only(_CLASSES[pv.type])
    kwargs: dict = {"value": pv.value}
    if pv.type == "enum":
        kwargs = {"value": pv.enum_strings[pv.value], "enum_strings": list(pv.enum_strings)}
    elif pv.is_array:
        dtype = np.float64 if pv.type == "float" else np.int32
        kwargs = {"value": np.asarray(pv.value, dtype=dtype), "max_length": pv.count}
    if pv.type == "float":
        kwargs["precision"] = 3
    return cls(**kwargs)


def build_pvdb(spec: IocSpec) -> dict[str, ChannelData]:
    """Every channel of the IOC, standard and iocStats PVs included, keyed by full PV name."""
    pvdb = {spec.full_name(pv.name): make_channel(pv) for pv in spec.pvs}
    legacy = spec.legacy_pvs()
    if "HEARTBEAT" in legacy:
        pvdb[spec.full_name("HEARTBEAT")] = _read_only(ChannelInteger)(value=0)
    if "UPTIME" in legacy:
        pvdb[spec.full_name("UPTIME")] = _read_only(ChannelDouble)(value=0.0, precision=1, units="s")
    if spec.iocstats:
        pvdb.update(stats_channels(spec.iocstats))
    return pvdb


def stats_channel(suffix: str, record: str, ca_type: str, units: str, count: int) -> ChannelData:
    """One iocStats channel with devIocStats' CA type (iocfleet_ioc/iocstats.py holds the table)."""
    writable = suffix in iocstats.WRITABLE
    if ca_type == "ENUM":
        cls = ChannelEnum if writable else _read_only(ChannelEnum)
        return cls(value=iocstats.ACCESS_STATES[0], enum_strings=list(iocstats.ACCESS_STATES),
                   reported_record_type=record)
    if ca_type == "STRING":
        return _read_only(ChannelString)(value="", reported_record_type=record)
    if ca_type == "CHAR":
        return _read_only(ChannelChar)(value="", max_length=count, reported_record_type=record)
    cls = ChannelDouble if writable else _read_only(ChannelDouble)
    return cls(value=0.0, units=units, precision=1 if units == "%" else 0, reported_record_type=record)


def stats_channels(name: str) -> dict[str, ChannelData]:
    return {f"{name}:{row[0]}": stats_channel(*row) for row in iocstats.STATS}


async def run_stats(spec: IocSpec, pvdb: dict[str, ChannelData], ctx) -> None:
    """Fill the iocStats channels: static values once, then every second (until cancelled)."""
    import caproto

    sampler = iocstats.Sampler(f"caproto {caproto.__version__}", len(pvdb))

    async def put(values: dict) -> None:
        for suffix, value in values.items():
            channel = pvdb[f"{spec.iocstats}:{suffix}"]
            if channel.value != value:
                await channel.write(value, verify_value=False)

    await put({k: v for k, v in sampler.static().items() if k != "ACCESS"})
    heartbeat = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        circuits = list(getattr(ctx, "circuits", ()))
        connections = sum(len(getattr(c.circuit, "channels", {})) for c in circuits)
        await put(sampler.periodic(heartbeat, len(circuits), connections))
        heartbeat = heartbeat + 1 if heartbeat < 2**31 - 1 else 1
        await asyncio.sleep(max(0.0, start + heartbeat - loop.time()))


def make_server(spec: IocSpec, environ: Mapping[str, str], context_class: type = ListeningContext,
                sockets: Callable[[Any], list[str]] = lambda ctx: report.bound_sockets(),
                say: Callable[[str], None] = functools.partial(print, flush=True)) -> tuple[Any, Callable]:
    """The Context serving `spec` and its startup hook (serving line, updates, iocStats).

    A pack (iocfleet_ioc/pack.py) builds each member with this too: its own environment, a Context
    subclass that joins the pack's socket groups, the member's own sockets and a prefixed `say`.
    """
    pvdb = build_pvdb(spec)
    enums = {pv.name: pv.enum_strings for pv in spec.pvs if pv.type == "enum"}

    replaced = set(STANDARD_PVS) - set(spec.legacy_pvs())  # served by iocStats instead

    async def write(name: str, value) -> None:
        if name in replaced:
            return
        if name in enums:
            value = enums[name][value]
        await pvdb[spec.full_name(name)].write(value, verify_value=False)

    async def startup(async_lib) -> None:
        say(report.serving_line(RUNTIME, spec, sockets(ctx), environ))
        if spec.iocstats:
            await asyncio.gather(run_updates(spec, write), run_stats(spec, pvdb, ctx))
        else:
            await run_updates(spec, write)

    ctx = context_class(pvdb)  # interfaces=None: caproto reads EPICS_CAS_INTF_ADDR_LIST itself
    return ctx, startup


async def serve(spec: IocSpec) -> None:
    """Serve until SIGTERM or SIGINT."""
    ctx, startup = make_server(spec, os.environ)
    await run_until_signalled(ctx, startup)


def make_member(member, context_class: type) -> tuple[Any, Callable]:
    """One IOC of a pack, served as if alone with the member's environment (run in its contextvars
    context: caproto reads the member's EPICS_* variables)."""
    from iocfleet_ioc import pack

    warning = report.ensure_array_bytes(member.spec, member.env)
    if warning:
        pack.say(f"iocfleet-ioc[{RUNTIME}]: warning: {warning}", err=True)
    return make_server(member.spec, member.env, context_class, pack.context_sockets, pack.say)


def main() -> None:
    if os.environ.get("IOCFLEET_PACK") or os.environ.get("IOCFLEET_PACK_FILE"):  # many IOCs, one process
        from iocfleet_ioc import pack

        pack.main(os.environ, ListeningContext, make_member)
    if os.environ.get("IOCFLEET_GROUP"):  # a user's PVGroup instead of declared PVs
        from iocfleet_ioc import usergroup

        asyncio.run(usergroup.serve(os.environ, ListeningContext))
        return
    spec = report.load_or_exit(os.environ, RUNTIME)
    warning = report.ensure_array_bytes(spec, os.environ)
    if warning:
        print(f"iocfleet-ioc[{RUNTIME}]: warning: {warning}", file=sys.stderr, flush=True)
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main()
