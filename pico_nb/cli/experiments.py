"""`pico-nb` commands on experiments: create, list, show, edit, clone, delete, share, params."""

from __future__ import annotations

import argparse
import json
from typing import Any, get_args

from pico_nb.cli.common import AddCommand, absolute, dump, open_lab, settings_pairs, table
from pico_nb.inputs import Status
from pico_nb.schemas import ExperimentRecord
from pico_nb.text import duration, local_time


def cmd_create(args: argparse.Namespace) -> int:
    exp = open_lab(args).create_experiment(
        args.name,
        absolute(args.input),
        absolute(args.output),
        params=settings_pairs(args.set),
        description=args.description or "",
    )
    return show_experiment(exp, args.json, created=True)


def show_experiment(exp: ExperimentRecord, as_json: bool, created: bool = False) -> int:
    """Print one experiment as JSON or as readable lines."""
    if as_json:
        dump(exp)
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
    lab = open_lab(args)
    items = lab.experiments(
        status=args.status, search=args.search, limit=args.limit, offset=args.offset
    )
    if args.json:
        dump(items)
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
    print(table(rows, ["ID", "NAME", "STATUS", "RUNS", "LAST STARTED", "OWNER"]))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    exp = lab.get_experiment(args.id)
    runs = lab.runs(args.id)
    if args.json:
        data = exp.model_dump(mode="json")
        data["runs"] = [r.model_dump(mode="json") for r in runs]
        dump(data)
        return 0
    show_experiment(exp, False)
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
        lines = table(rows, ["RUN", "RUN ID", "STATUS", "STARTED", "DURATION", "EXIT", "REASON"])
        print("\n".join("    " + line for line in lines.splitlines()))
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.description is not None:
        changes["description"] = args.description
    if args.input is not None:
        changes["input_path"] = absolute(args.input)
    if args.output is not None:
        changes["output_path"] = absolute(args.output)
    if args.set:
        changes["params"] = settings_pairs(args.set)
    exp = open_lab(args).update_experiment(args.id, **changes)
    if not args.json:
        print(f"updated experiment {exp.id}: {exp.name}")
        return 0
    return show_experiment(exp, True)


def cmd_clone(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.output is not None:
        changes["output_path"] = absolute(args.output)
    if args.set:
        changes["params"] = settings_pairs(args.set)
    exp = open_lab(args).clone_experiment(args.id, name=args.name, **changes)
    if not args.json:
        print(f"cloned experiment {args.id} as experiment {exp.id}: {exp.name}")
        return 0
    return show_experiment(exp, True)


def cmd_delete(args: argparse.Namespace) -> int:
    open_lab(args).delete_experiment(args.id, remove_outputs=args.remove_outputs)
    print(f"deleted experiment {args.id}" + (" and its outputs" if args.remove_outputs else ""))
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    exp = open_lab(args).share_experiment(args.id, shared=not args.unshare)
    print(f"experiment {exp.id} is {'shared with the lab' if exp.shared else 'private'}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    spec = open_lab(args).spec
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


def add_commands(add: AddCommand) -> None:
    """The experiment commands and their arguments."""
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

    add("params", cmd_params, "list the pipeline's parameters (JSON Schema with --json)")
