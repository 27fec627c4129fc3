"""Run a caproto server context until SIGTERM or SIGINT: the one lifetime of every caproto IOC program
(iocfleet's own PVs, and a user's PVGroup)."""

from __future__ import annotations

import asyncio
import signal


async def run_until_signalled(ctx, startup) -> None:
    """Run `ctx` (a caproto asyncio server Context) with `startup` as its startup hook; SIGTERM or SIGINT
    cancels it, and that is a clean return."""
    task = asyncio.ensure_future(ctx.run(startup_hook=startup))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
