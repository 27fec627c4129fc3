"""The periodic updates every IOC runs: HEARTBEAT, UPTIME and each simulated PV at its own rate.

Runtimes differ only in how a value reaches a PV, so they pass a `write(pv_name, value)` callable
(a coroutine function for caproto, a plain function for softioc records) and share the scheduling.
Ticks are scheduled against a fixed start time, so a slow write delays one update, not all later ones.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable

import numpy as np

from .sim import value_for
from .spec import IocSpec, PvSpec

Write = Callable[[str, Any], "Awaitable[None] | None"]


async def run_updates(spec: IocSpec, write: Write, clock: Callable[[], float] = time.monotonic,
                      seed: int | None = None) -> None:
    """Run every periodic update of `spec` until cancelled."""
    start = clock()
    rng = np.random.default_rng(seed)
    tasks = [asyncio.ensure_future(_standard(write, start, clock))]
    tasks += [asyncio.ensure_future(_simulate(pv, write, start, clock, rng)) for pv in spec.pvs if pv.sim]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def _call(write: Write, name: str, value: Any) -> None:
    result = write(name, value)
    if inspect.isawaitable(result):
        await result


async def _standard(write: Write, start: float, clock: Callable[[], float]) -> None:
    tick = 0
    while True:
        await _call(write, "HEARTBEAT", tick)
        await _call(write, "UPTIME", clock() - start)
        tick += 1
        await _sleep_until(start + tick, clock)


async def _simulate(pv: PvSpec, write: Write, start: float, clock: Callable[[], float],
                    rng: np.random.Generator) -> None:
    period = 1.0 / pv.rate_hz
    tick = 0
    while True:
        await _call(write, pv.name, value_for(pv, clock() - start, tick, rng))
        tick += 1
        await _sleep_until(start + tick * period, clock)


async def _sleep_until(deadline: float, clock: Callable[[], float]) -> None:
    await asyncio.sleep(max(0.0, deadline - clock()))
