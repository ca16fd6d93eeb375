"""Run by hand: what the REST service's pre-parse checks on a JSON body cost.

Every POST/PATCH/PUT body is measured for nesting depth before json.loads sees it (issue 12).
This prints the median time of that check on 1 MiB bodies, ordinary and hostile, next to
json.loads of the ordinary body measured in the same run, with the load average.

    .venv/bin/python benchmarks/body_checks.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

from pico_nb.hub.wire import MAX_BODY_BYTES, nesting_depth


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bodies() -> dict[str, bytes]:
    """1 MiB bodies: a realistic one and the shapes that are worst for a scanner."""
    params = {f"p{i}": [i, i + 1] for i in range(20)}
    item = {"name": "mouse 12 [day 3]", "description": 'says "hi" \\ {x}', "params": params}
    size = MAX_BODY_BYTES
    ordinary = json.dumps([item] * (size // (len(json.dumps(item)) + 2) - 1)).encode()
    return {
        "ordinary": ordinary,
        "open brackets": b"[" * size,
        "balanced pairs": b"[]" * (size // 2),
        "empty strings": b'"' * size,
        "escaped quotes": b'{"a": "' + b'\\"' * (size // 2 - 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cases = bodies()
    baseline = median_seconds(lambda: json.loads(cases["ordinary"]), args.repeat)
    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat}")
    print(f"json.loads, ordinary 1 MiB body: {baseline * 1000:.1f} ms (baseline)")
    for name, body in cases.items():
        seconds = median_seconds(lambda b=body: nesting_depth(b), args.repeat)
        print(
            f"nesting_depth, {name} ({len(body) >> 10} KiB): {seconds * 1000:.1f} ms, "
            f"{seconds / baseline:.2f} x json.loads"
        )


if __name__ == "__main__":
    main()
