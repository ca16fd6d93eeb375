"""What running a pipeline as its owner costs: start latency direct vs through sudo + helper.

Prints the median and p95, over --runs starts each, of the time from starting the pipeline
command to its first byte of output: (a) started directly by the service account, as on a
laptop; (b) started as the member through `sudo -n -u pico-<name> pico-nb-runas`, as on a
lab server. Both are started by the service account `pico` with the same allow-listed
environment, interleaved, so load hits both alike. Needs root, `pico-nb hub-setup` and one
member account (default pico-bob).

    .venv/bin/python benchmarks/runas.py [--runs 20] [--member bob]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pico_nb.execution.runas import pipeline_command
from pico_nb.os_accounts import SERVICE_ACCOUNT, account_exists, is_root, member_account

PIPELINE = [sys.executable, "-c", "print('started', flush=True)"]


def first_byte(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Seconds from starting argv as the service account to its first byte of output."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=cwd, user=SERVICE_ACCOUNT)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - started
    proc.stdout.read()
    proc.wait()
    return elapsed


def main() -> None:
    """Time both paths, interleaved, and print medians, p95 and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--member", default="bob")
    args = parser.parse_args()
    account = member_account(args.member)
    if not (is_root() and account_exists(SERVICE_ACCOUNT) and account_exists(account)):
        sys.exit(f"needs root, `pico-nb hub-setup` and `pico-nb users add {args.member}`")
    with tempfile.TemporaryDirectory(prefix="pico-runas-bench-") as folder:
        out = Path(folder)
        out.chmod(0o777)
        plan = {"argv": PIPELINE, "output_path": str(out), "gpus": None}
        direct = pipeline_command({**plan, "account": None}, os.environ)
        member = pipeline_command({**plan, "account": account}, os.environ)
        times: dict[str, list[float]] = {"direct": [], "as member": []}
        for _ in range(args.runs):
            times["direct"].append(first_byte(*direct))
            times["as member"].append(first_byte(*member))
    load = os.getloadavg()[0]
    print(f"start → first output byte, {args.runs} starts each, load average {load:.2f}")
    for name, values in times.items():
        p50, p95 = statistics.median(values) * 1000, statistics.quantiles(values, n=20)[-1] * 1000
        print(f"  {name:10s} p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    ratio = statistics.median(times["as member"]) / statistics.median(times["direct"])
    print(f"  ratio of medians (as member / direct): {ratio:.2f}")


if __name__ == "__main__":
    main()
