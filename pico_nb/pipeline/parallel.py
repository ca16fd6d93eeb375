"""Using both cores: reading ahead while computing, and splitting a chunk between threads.

NumPy, SciPy's FFT and OpenCV release the GIL on large arrays, so plain threads overlap.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pico_nb.pipeline.store import chunk_ranges

THREADS = 2


def prefetch(
    read: Callable[[int, int], np.ndarray], total: int, size: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, frames) per chunk, the next chunk being read while the caller works."""
    ranges = list(chunk_ranges(total, size))
    if not ranges:
        return
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(read, *ranges[0])
        for index, (start, stop) in enumerate(ranges):
            frames = pending.result()
            if index + 1 < len(ranges):
                pending = ahead.submit(read, *ranges[index + 1])
            yield start, stop, frames


def split_map(work: Callable[..., Any], *arrays: np.ndarray, unit: int = 1) -> list[Any]:
    """work() on each thread's share of the frames (first axis), results in order; shares
    hold whole units of frames, so none splits a time bin."""
    count = len(arrays[0])
    units = -(-count // unit)
    shares = np.linspace(0, units, min(THREADS, max(1, units)) + 1).round().astype(int)
    edges = np.minimum(shares * unit, count)
    parts = [tuple(a[lo:hi] for a in arrays) for lo, hi in itertools.pairwise(edges)]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(lambda part: work(*part), parts))
