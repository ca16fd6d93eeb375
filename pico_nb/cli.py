"""The `pico-nb` command line: every Lab operation, with one-line errors and stable --json."""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, get_args

import pico_nb
from pico_nb import os_accounts
from pico_nb.demo import DELEGATED, add_demo_commands, run_delegated
from pico_nb.errors import PicoError, ValidationError
from pico_nb.inputs import Status
from pico_nb.schemas import ExperimentRecord, Record, RunRecord
from pico_nb.settings import load_settings
from pico_nb.terminal import follow, run_name
from pico_nb.text import duration, error_text, local_time

if TYPE_CHECKING:
    from pico_nb.lab import Lab

Handler = Callable[[argparse.Namespace], int]


def _abs(path: str) -> str:
    """Relative folders on the command line mean relative to where the user stands."""
    return os.path.abspath(os.path.expanduser(path))


def _settings_pairs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """--set key=value pairs; values stay text and the spec types them."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError.one("--set", f"expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _dump(value: Record | Sequence[Record] | dict[str, Any]) -> None:
    """The --json form: records as JSON with ISO timestamps."""
    if isinstance(value, Sequence):
        data: Any = [v.model_dump(mode="json") for v in value]
    elif isinstance(value, Record):
        data = value.model_dump(mode="json")
    else:
        data = value
    print(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned table for terminals."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _lab(args: argparse.Namespace) -> Lab:
    """The Lab the command acts through (the lab server's, inside a hub user server),
    reconciled first: a command shows no run as running whose supervisor has gone."""
    lab = pico_nb.Lab(args.home, args.user)
    lab.reconcile()
    return lab


# ------------------------------------------------------------------- experiments


def cmd_create(args: argparse.Namespace) -> int:
    exp = _lab(args).create_experiment(
        args.name,
        _abs(args.input),
        _abs(args.output),
        params=_settings_pairs(args.set),
        description=args.description or "",
    )
    return _show_experiment(exp, args.json, created=True)


def _show_experiment(exp: ExperimentRecord, as_json: bool, created: bool = False) -> int:
    """Print one experiment as JSON or as readable lines."""
    if as_json:
        _dump(exp)
        return 0
    if created:
        print(f"created experiment {exp.id}: {exp.name}")
        return 0
    print(f"experiment {exp.id}: {exp.name}")
    print(f"  owner:       {exp.owner}{'  (shared with the lab)' if exp.shared else ''}")
    print(f"  status:      {exp.status}")
    if exp.description:
        print(f"  description: {exp.description}")
    print(f"  input:       {exp.input_path}")
    print(f"  output:      {exp.output_path}")
    if exp.parent_id:
        print(f"  cloned from: experiment {exp.parent_id}")
    print(f"  created:     {local_time(exp.created_at)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    lab = _lab(args)
    items = lab.experiments(
        status=args.status, search=args.search, limit=args.limit, offset=args.offset
    )
    if args.json:
        _dump(items)
        return 0
    if not items:
        print("no experiments")
        return 0
    rows = [
        [
            str(e.id),
            e.name[:40],
            e.status,
            str(e.run_count),
            local_time(e.last_run.started_at if e.last_run else None),
            e.owner,
        ]
        for e in items
    ]
    print(_table(rows, ["ID", "NAME", "STATUS", "RUNS", "LAST STARTED", "OWNER"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    lab = _lab(args)
    exp = lab.get_experiment(args.id)
    runs = lab.runs(args.id)
    if args.json:
        data = exp.model_dump(mode="json")
        data["runs"] = [r.model_dump(mode="json") for r in runs]
        _dump(data)
        return 0
    _show_experiment(exp, False)
    changed = lab.spec.changed(exp.params)
    print("  parameters (differing from defaults):" if changed else "  parameters: all defaults")
    for key, value in changed.items():
        print(f"    {key} = {value}")
    if runs:
        rows = [
            [
                str(r.number),
                str(r.id),
                r.status,
                local_time(r.started_at),
                duration(r.duration_seconds),
                "-" if r.exit_code is None else str(r.exit_code),
                r.reason or "",
            ]
            for r in runs
        ]
        print("  runs:")
        table = _table(rows, ["RUN", "RUN ID", "STATUS", "STARTED", "DURATION", "EXIT", "REASON"])
        print("\n".join("    " + line for line in table.splitlines()))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.description is not None:
        changes["description"] = args.description
    if args.input is not None:
        changes["input_path"] = _abs(args.input)
    if args.output is not None:
        changes["output_path"] = _abs(args.output)
    if args.set:
        changes["params"] = _settings_pairs(args.set)
    exp = _lab(args).update_experiment(args.id, **changes)
    if not args.json:
        print(f"updated experiment {exp.id}: {exp.name}")
        return 0
    return _show_experiment(exp, True)


def cmd_clone(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.output is not None:
        changes["output_path"] = _abs(args.output)
    if args.set:
        changes["params"] = _settings_pairs(args.set)
    exp = _lab(args).clone_experiment(args.id, name=args.name, **changes)
    if not args.json:
        print(f"cloned experiment {args.id} as experiment {exp.id}: {exp.name}")
        return 0
    return _show_experiment(exp, True)


def cmd_delete(args: argparse.Namespace) -> int:
    _lab(args).delete_experiment(args.id, remove_outputs=args.remove_outputs)
    print(f"deleted experiment {args.id}" + (" and its outputs" if args.remove_outputs else ""))
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    exp = _lab(args).share_experiment(args.id, shared=not args.unshare)
    print(f"experiment {exp.id} is {'shared with the lab' if exp.shared else 'private'}")
    return 0


# -------------------------------------------------------------------------- runs


def cmd_run(args: argparse.Namespace) -> int:
    lab = _lab(args)
    run = lab.run_experiment(args.id)
    if args.json and not args.follow:
        _dump(run)
        return 0
    where = "queued" if run.status == "queued" else "started"
    log = run.log_path if lab.settings.executor == "local" else f"pico-nb logs {args.id}"
    print(f"{where} {run_name(run)} (log: {log})")
    if run.reason:
        print(f"note: {run.reason}")
    return follow(lab, run) if args.follow else 0


def _pick_run(lab: Lab, experiment_id: int, number: int | None) -> RunRecord:
    """The numbered run, or the latest one."""
    runs = lab.runs(experiment_id)
    if not runs:
        raise ValidationError.one("id", f"experiment {experiment_id} has no runs yet")
    if number is None:
        return runs[-1]
    for run in runs:
        if run.number == number:
            return run
    raise ValidationError.one("--run", f"experiment {experiment_id} has no run {number}")


def cmd_stop(args: argparse.Namespace) -> int:
    lab = _lab(args)
    run = _pick_run(lab, args.id, args.run)
    run = lab.stop_run(run.id)
    if run.active:
        run = lab.wait(run.id, timeout=lab.settings.stop_grace_seconds + 10)
    print(f"{run_name(run)} {run.status}: {run.reason or 'stop requested'}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    lab = _lab(args)
    run = _pick_run(lab, args.id, args.run)
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


def cmd_params(args: argparse.Namespace) -> int:
    spec = _lab(args).spec
    if args.json:
        print(json.dumps(spec.json_schema(), indent=2))
        return 0
    for group, params in spec.groups().items():
        print(f"{group}:")
        for p in params:
            default = ",".join(map(str, p.default)) if isinstance(p.default, list) else p.default
            print(f"  {p.name} = {default}" + (f"  ({p.unit})" if p.unit else ""))
            print(f"      {p.help}")
    return 0


# ----------------------------------------------------------------------- results


def cmd_results(args: argparse.Namespace) -> int:
    lab = _lab(args)
    run = _pick_run(lab, args.id, args.run)
    results = lab.results(run.id)
    if args.json:
        _dump(results)
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
    comparison = _lab(args).compare_runs(args.run_ids)
    if args.json:
        _dump(comparison)
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
    print(_table(rows, headers))
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
    destination = _abs(args.to) if args.to else None
    where = _lab(args).export(args.run_id, args.format, destination)
    print(where)
    return 0


# ----------------------------------------------------------------------- workers


def cmd_workers(args: argparse.Namespace) -> int:
    workers = _lab(args).workers()
    if args.json:
        _dump(workers)
        return 0
    if not workers:
        print("no workers have registered (start one with: pico-nb worker)")
        return 0
    rows = [
        [
            w.name,
            w.host,
            w.state,
            f"{w.busy}/{w.slots}",
            ",".join(w.gpus) or "-",
            ",".join(map(str, w.runs)) or "-",
            local_time(w.heartbeat_at),
        ]
        for w in workers
    ]
    print(_table(rows, ["WORKER", "HOST", "STATE", "BUSY", "GPUS", "RUNS", "LAST REPORT"]))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings(args.home)
    if settings.executor != "celery":  # checked before a Lab touches the queue
        raise ValidationError.one("executor", "must be celery to start a worker")
    pico_nb.Lab.operator(settings=settings).serve_as_worker(args.name, args.slots, args.gpus)
    return 0


# ---------------------------------------------------------------------- accounts


def _read_password(args: argparse.Namespace) -> str:
    """Ask twice on a terminal; --password-stdin for scripts. Never echoed, never logged."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationError.one("password", "the two entries differ")
    return first


def _as_lab_server_operator(args: argparse.Namespace) -> None:
    """As root on a set-up lab server: make the member's OS account and folders, then drop to
    the service account, so the database is only ever written by its owner."""
    if not os_accounts.is_root():
        return
    if os_accounts.setup_problem(load_settings(args.home).home) is not None:
        return  # a laptop, or a data home that is not a lab server's: nothing to drop
    if args.action == "add" and args.name:
        settings = load_settings(args.home, member_accounts=True)
        account = os_accounts.ensure_member(args.name, settings.member_folders(args.name))
        print(f"OS account {account} ready")
    os_accounts.become_service_account()


def cmd_users(args: argparse.Namespace) -> int:
    _as_lab_server_operator(args)
    lab = pico_nb.Lab.operator(args.home)
    if args.action == "list":
        users = lab.users()
        if args.json:
            _dump(users)
            return 0
        rows = [
            [
                u.username,
                "admin" if u.is_admin else "user",
                "password" if u.has_password else "hub/OS identity",
                local_time(u.created_at),
            ]
            for u in users
        ]
        print(_table(rows, ["USER", "ROLE", "LOGIN", "CREATED"]))
        return 0
    if not args.name:
        raise ValidationError.one("name", "is required")
    if args.action == "add":
        user = lab.add_user(args.name, _read_password(args), is_admin=args.admin)
        print(f"added {'admin' if user.is_admin else 'user'} {user.username}")
    elif args.action == "passwd":
        lab.set_password(args.name, _read_password(args))
        print(f"password of {args.name} changed")
    elif args.action == "admin":
        user = lab.set_admin(args.name, not args.revoke)
        print(f"{user.username} is {'an admin' if user.is_admin else 'no longer an admin'}")
    else:
        lab.delete_user(args.name)
        print(f"deleted user {args.name}")
    return 0


# -------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; each maps to one Lab call."""
    parser = argparse.ArgumentParser(prog="pico-nb", description=__doc__)
    parser.add_argument(
        "--home", help="data home (default: $PICO_NB_HOME or ~/.local/share/pico-nb)"
    )
    parser.add_argument("--user", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str, json_flag: bool = True) -> Any:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = add("create", cmd_create, "create an experiment")
    p.add_argument("name")
    p.add_argument("--input", required=True, help="folder of frames (frame_N.jpg or TIFF)")
    p.add_argument("--output", required=True, help="folder for the results")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a pipeline parameter")
    p.add_argument("--description")

    p = add("list", cmd_list, "list experiments, newest first")
    p.add_argument("--status", choices=get_args(Status))
    p.add_argument("--search")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)

    p = add("show", cmd_show, "show an experiment and its runs")
    p.add_argument("id", type=int)

    p = add("edit", cmd_edit, "change an experiment")
    p.add_argument("id", type=int)
    p.add_argument("--name")
    p.add_argument("--description")
    p.add_argument("--input")
    p.add_argument("--output")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")

    p = add("clone", cmd_clone, "copy an experiment (own or shared)")
    p.add_argument("id", type=int)
    p.add_argument("--name")
    p.add_argument("--output")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")

    p = add("delete", cmd_delete, "delete an experiment and its logs", json_flag=False)
    p.add_argument("id", type=int)
    p.add_argument("--remove-outputs", action="store_true", help="also delete its output folder")

    p = add("share", cmd_share, "share an experiment read-only with the lab", json_flag=False)
    p.add_argument("id", type=int)
    p.add_argument("--unshare", action="store_true")

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

    add("params", cmd_params, "list the pipeline's parameters (JSON Schema with --json)")

    p = add("users", cmd_users, "manage hub accounts")
    p.add_argument("action", choices=["add", "list", "delete", "passwd", "admin"])
    p.add_argument("name", nargs="?")
    p.add_argument("--admin", action="store_true", help="with add: make an admin")
    p.add_argument("--revoke", action="store_true", help="with admin: take admin rights away")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    add("workers", cmd_workers, "list Celery workers: slots, GPUs, runs, last report")

    p = add("worker", cmd_worker, "run a Celery worker here (executor = celery)", json_flag=False)
    p.add_argument("--name", help="unique worker name (default: this host's name)")
    p.add_argument("--slots", type=int, help="runs at once (default: one per GPU, or 1)")
    p.add_argument("--gpus", help="GPU ids this worker hands out, e.g. 0,1")

    from pico_nb.hub.launch import add_commands as add_hub_commands
    from pico_nb.widgets.app import add_commands as add_dashboard_commands

    add_demo_commands(sub)
    add_dashboard_commands(sub)
    add_hub_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and a non-zero exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in DELEGATED:
        command = functools.partial(run_delegated, argv[0], argv[1:])
    else:
        args = parser.parse_args(argv)
        command = functools.partial(args.handler, args)
    try:
        return command()
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PicoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except Exception as exc:  # a fault: one line for the person, never a traceback
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
