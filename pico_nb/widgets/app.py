"""`pico-nb dashboard`: serve notebooks/dashboard.ipynb with Voila on 127.0.0.1, ready to use.

This module stays light, since the CLI registers its command on every start; the Voila
server itself is in voila_server.py.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico_nb.widgets import default_lab

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI


def ensure_demo(lab: LabAPI) -> None:
    """A fresh machine opens with the demo movie and a ready demo experiment."""
    if lab.count_experiments(scope="mine"):
        return
    try:
        from pico_nb.demo import demo_experiment

        print("preparing the demo movie and experiment (first start only)…", flush=True)
        demo_experiment(lab)
    except ImportError as exc:
        print(f"demo data unavailable: {exc}", file=sys.stderr)


def start_background(
    port: int, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen[str], str]:
    """Start the dashboard as its own process and return it with its URL, once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, f"--port={port}", "--no-browser", "--no-demo"],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        """Watch for the URL line and keep draining the output so the server never blocks."""
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("pico-nb dashboard: "):
                found.put(line.split(": ", 1)[1].strip())

    threading.Thread(target=read, daemon=True).start()
    try:
        return proc, found.get(timeout=timeout)
    except queue.Empty:
        stop_background(proc)
        raise RuntimeError(f"the dashboard did not start within {timeout:.0f} s") from None


def stop_background(proc: subprocess.Popen[str]) -> None:
    """SIGTERM lets Voila shut its kernels down; SIGKILL only if it hangs."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cmd_dashboard(args: argparse.Namespace) -> int:
    """The CLI's global --home reaches the dashboard's kernels through the environment."""
    if getattr(args, "home", None):
        os.environ["PICO_NB_HOME"] = str(Path(args.home).expanduser().resolve())
    from pico_nb.widgets.voila_server import serve

    if not args.no_demo:
        ensure_demo(default_lab())
    return serve(args.port, not args.no_browser)


def add_commands(sub: Any) -> None:
    """Register `pico-nb dashboard` on the CLI's subparsers."""
    p = sub.add_parser(
        "dashboard",
        help="open the dashboard web app (Voila) on 127.0.0.1",
        description="Serve the dashboard with Voila on 127.0.0.1 and print its URL.",
    )
    p.add_argument("--port", type=int, default=8866, help="port to listen on (default 8866)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--no-demo", action="store_true", help="do not prepare the demo experiment")
    p.set_defaults(handler=cmd_dashboard)


def main(argv: list[str] | None = None) -> int:
    """`python -m pico_nb.widgets.app` until the CLI registers the command."""
    parser = argparse.ArgumentParser(prog="pico-nb")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["dashboard", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
