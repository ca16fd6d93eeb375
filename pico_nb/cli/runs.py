"""`pico-nb` commands on runs: run, stop, logs, results, compare, export."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pico_nb.cli.common import AddCommand, absolute, dump, open_lab, pick_run, table
from pico_nb.terminal import follow, run_name


def cmd_run(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    run = lab.run_experiment(args.id)
    if args.json and not args.follow:
        dump(run)
        return 0
    where = "queued" if run.status == "queued" else "started"
    print(f"{where} {run_name(run)} (log: pico-nb logs {args.id} --follow)")
    if run.reason:
        print(f"note: {run.reason}")
    return follow(lab, run) if args.follow else 0


def cmd_stop(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    run = pick_run(lab, args.id, args.run)
    run = lab.stop_run(run.id)
    if run.active:
        run = lab.wait(run.id, timeout=lab.settings.stop_grace_seconds + 10)
    print(f"{run_name(run)} {run.status}: {run.reason or 'stop requested'}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    run = pick_run(lab, args.id, args.run)
    if args.follow:
        return follow(lab, run, from_tail=args.tail)
    offset = 0
    while True:
        chunk = lab.read_log(run.id, offset)
        sys.stdout.write(chunk.text)
        if chunk.next_offset == offset:
            break
        offset = chunk.next_offset
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    run = pick_run(lab, args.id, args.run)
    results = lab.results(run.id)
    if args.json:
        dump(results)
        return 0
    from pico_nb.widgets.results import key_numbers

    print(f"run {run.number} (run id {run.id}) of experiment {run.experiment_id}: {run.status}")
    print(f"  folder: {results.output_path}")
    if results.note:
        print(f"  {results.note}")
    for label, value in key_numbers(results.summary or {}):
        print(f"  {label}: {value}")
    print(f"  files: {len(results.files)}{'+' if results.truncated else ''}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    comparison = open_lab(args).compare_runs(args.run_ids)
    if args.json:
        dump(comparison)
        return 0

    def fmt(value: Any, pattern: str = "{}") -> str:
        return "-" if value is None else pattern.format(value)

    rows = [
        [
            f"{n.run_id} ({n.name[:24]} #{n.number})",
            n.status,
            fmt(n.cells),
            fmt(n.accepted),
            fmt(n.bad_frames),
            fmt(n.motion_rms, "{:.2f}"),
            fmt(n.pipeline_seconds, "{:.1f}"),
            n.reason or "",
        ]
        for n in comparison.runs
    ]
    headers = ["RUN", "STATUS", "CELLS", "ACCEPTED", "BAD FRAMES", "MOTION RMS", "SECONDS"]
    headers.append("REASON")
    print(table(rows, headers))
    for name, values in comparison.differing.items():
        print(f"  {name}: " + " | ".join(map(str, values)))
    match = comparison.match
    if match is not None:
        corr = "-" if match.trace_correlation is None else f"{match.trace_correlation:.3f}"
        print(
            f"cells of run {match.run_a} vs {match.run_b}: {match.matched} matched, "
            f"{match.only_a} only in {match.run_a}, {match.only_b} only in {match.run_b}; "
            f"median trace correlation {corr}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    destination = absolute(args.to) if args.to else None
    where = open_lab(args).export(args.run_id, args.format, destination)
    print(where)
    return 0


def add_commands(add: AddCommand) -> None:
    """The run commands and their arguments."""
    p = add("run", cmd_run, "run an experiment (queued if no slot is free)")
    p.add_argument("id", type=int)
    p.add_argument("--follow", action="store_true", help="print the live log until it ends")

    p = add("stop", cmd_stop, "stop an experiment's run", json_flag=False)
    p.add_argument("id", type=int)
    p.add_argument("--run", type=int, help="run number (default: the latest)")

    p = add("logs", cmd_logs, "print a run's log", json_flag=False)
    p.add_argument("id", type=int)
    p.add_argument("--run", type=int, help="run number (default: the latest)")
    p.add_argument("--follow", action="store_true")
    p.add_argument("--tail", type=int, help="with --follow: start from the last N lines")

    p = add("results", cmd_results, "show what a run produced (any run, not only the latest)")
    p.add_argument("id", type=int)
    p.add_argument("--run", type=int, help="run number (default: the latest)")

    p = add("compare", cmd_compare, "compare two or more runs by run id (see `show`)")
    p.add_argument("run_ids", type=int, nargs="+", metavar="RUN_ID")

    p = add("export", cmd_export, "export a run's accepted cells and traces", json_flag=False)
    p.add_argument("run_id", type=int, metavar="RUN_ID")
    p.add_argument("--format", choices=["nwb", "csv"], required=True)
    p.add_argument("--to", help="file (nwb) or folder (csv); default: <output>/exports/")
