"""Simulated PV values, computed with numpy as pure functions of time and tick.

Both runtimes call `value_for(pv, t, tick, rng)` from their update loops, so a simulated PV shows the
same waveform whichever runtime serves it. For arrays, element k is phase-shifted by k/count, which
makes a waveform PV look like a travelling wave rather than `count` copies of one number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import PvSpec

PERIOD_S = 10.0
SINE_AMPLITUDE = 1.0
RAMP_SPAN = 100.0
NOISE_SIGMA = 1.0


def simulate(kind: str, t: float, tick: int, count: int, base: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Return `count` float64 samples of simulation `kind` at time `t` (s) and update number `tick`."""
    phase = np.arange(count, dtype=np.float64) / count
    if kind == "sine":
        return base + SINE_AMPLITUDE * np.sin(2.0 * np.pi * (t / PERIOD_S + phase))
    if kind == "ramp":
        return base + RAMP_SPAN * np.mod(t / PERIOD_S + phase, 1.0)
    if kind == "noise":
        return base + rng.normal(0.0, NOISE_SIGMA, count)
    if kind == "counter":
        return base + tick + np.arange(count, dtype=np.float64)
    raise ValueError(f"unknown simulation {kind!r}")


def base_of(pv: PvSpec) -> np.ndarray:
    """The offset a simulation runs around: the PV's initial value (0 for enums)."""
    if pv.type == "enum":
        return np.zeros(pv.count)
    return np.broadcast_to(np.asarray(pv.value, dtype=np.float64), (pv.count,))


def value_for(pv: PvSpec, t: float, tick: int, rng: np.random.Generator) -> Any:
    """The value a simulated PV takes at `t`: a Python scalar for count 1, a numpy array otherwise."""
    samples = simulate(pv.sim or "", t, tick, pv.count, base_of(pv), rng)
    if pv.type == "enum":
        samples = np.mod(samples, len(pv.enum_strings))
    if pv.type in ("int", "enum"):
        info = np.iinfo(np.int32)
        samples = np.clip(np.rint(samples), info.min, info.max).astype(np.int32)
    if pv.count == 1:
        return samples[0].item()
    return samples
