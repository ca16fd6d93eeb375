"""What happens over time in a demo movie: calcium transients, slow haze, vessel pulsation,
tissue motion and damaged frames."""

from __future__ import annotations

import numpy as np
from scipy import signal

MAX_SHIFT = 5.0


def calcium_traces(rng: np.random.Generator, count: int, frames: int, fr: float) -> np.ndarray:
    """Spike trains filtered by a fast rise and an exponential decay, one row per neuron."""
    rates = rng.uniform(0.15, 0.6, count) / fr
    spikes = (rng.random((count, frames)) < rates[:, None]).astype(np.float32)
    for k in range(count):
        if spikes[k].sum() < 3:
            spikes[k, rng.choice(frames, 3, replace=False)] = 1
    spikes *= rng.lognormal(0, 0.35, spikes.shape).astype(np.float32)
    out = np.empty_like(spikes)
    lags = np.arange(int(10 * fr) + 2)
    rise = np.exp(-1 / (0.08 * fr))
    for k in range(count):
        decay = np.exp(-1 / (rng.uniform(0.5, 1.0) * fr))
        unit_peak = (decay**lags - rise**lags).max()
        slow = signal.lfilter([1], [1, -decay], spikes[k])
        fast = signal.lfilter([1], [1, -rise], spikes[k])
        out[k] = (slow - fast) / unit_peak
    return out


def slow_activity(rng: np.random.Generator, count: int, frames: int, fr: float) -> np.ndarray:
    """Slow fluctuations (events rising over ~1 s, decaying over 3-6 s), mean 1, std ~0.5."""
    events = (rng.random((count, frames)) < rng.uniform(0.05, 0.15, (count, 1)) / fr).astype(
        np.float32
    )
    out = np.empty_like(events)
    rise = np.exp(-1 / fr)
    for k in range(count):
        decay = np.exp(-1 / (rng.uniform(3, 6) * fr))
        slow = signal.lfilter([1], [1, -decay], events[k])
        out[k] = slow - signal.lfilter([1], [1, -rise], events[k])
    out -= out.mean(axis=1, keepdims=True)
    out /= out.std(axis=1, keepdims=True) + 1e-6
    return np.clip(1 + 0.5 * out, 0.2, None).astype(np.float32)


def heartbeat(rng: np.random.Generator, frames: int, fr: float) -> np.ndarray:
    """Vessel pulsation: a ~1 Hz oscillation whose rate wanders by ±20 %."""
    rate = rng.uniform(0.85, 1.15) * (1 + 0.2 * _smooth_walk(rng, frames))
    phase = 2 * np.pi * np.cumsum(rate) / fr
    return np.sin(phase + rng.uniform(0, 2 * np.pi)).astype(np.float32)


def _smooth_walk(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A slow random wander in [-1, 1]."""
    walk = np.convolve(rng.normal(0, 1, frames + 200), np.ones(200) / 200, "same")[100:-100]
    return walk / max(float(np.abs(walk).max()), 1e-9)


def tissue_motion(rng: np.random.Generator, frames: int) -> np.ndarray:
    """A mean-free, bounded sub-pixel random walk of the tissue (y, x) per frame."""
    steps = rng.normal(0, 0.22, (frames, 2))
    walk = np.zeros((frames, 2))
    for t in range(1, frames):
        walk[t] = 0.97 * walk[t - 1] + steps[t]
    walk -= walk.mean(axis=0)
    return np.clip(walk, -MAX_SHIFT, MAX_SHIFT)


def corruption_plan(rng: np.random.Generator, frames: int) -> dict[int, str]:
    """A few black, saturated and torn frames, never at the ends and never adjacent."""
    count = max(1, frames // 500)
    kinds = ("black", "torn", "saturated")
    picks: list[int] = []
    while len(picks) < count and frames > 10:
        t = int(rng.integers(3, frames - 3))
        if all(abs(t - p) > 2 for p in picks):
            picks.append(t)
    return {t: kinds[i % 3] for i, t in enumerate(sorted(picks))}


def corrupt(frame: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Damage one uint8 frame the way a failing camera link does."""
    h, w = frame.shape
    if kind == "black":
        return rng.integers(0, 3, frame.shape).astype(np.uint8)
    if kind == "saturated":
        return np.full_like(frame, 255)
    out = frame.copy()
    line = int(rng.integers(h // 4, 3 * h // 4))
    out[line:] = np.roll(frame[line:], int(rng.integers(w // 6, w // 3)), axis=1) // 2 + 60
    return out
