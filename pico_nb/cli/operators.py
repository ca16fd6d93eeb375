"""`pico-nb` commands for whoever runs the lab: workers and hub accounts."""

from __future__ import annotations

import argparse
import getpass
import sys

import pico_nb
from pico_nb import os_accounts
from pico_nb.cli.common import AddCommand, dump, open_lab, table
from pico_nb.contract.errors import ValidationError
from pico_nb.schemas import JobRecord, MachineRecord
from pico_nb.settings import load_settings
from pico_nb.text import local_time, size

MIB = 1 << 20


def cmd_workers(args: argparse.Namespace) -> int:
    lab = open_lab(args)
    workers, queue = lab.workers(), lab.queue()
    if not workers and queue.workers is None:  # not Celery: Slurm's nodes, or this host
        return _machines(lab.machines(), queue.jobs, args.json)
    if args.json:
        dump(workers)
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
    print(table(rows, ["WORKER", "HOST", "STATE", "BUSY", "GPUS", "RUNS", "LAST REPORT"]))
    return 0


def _machines(machines: list[MachineRecord], jobs: list[JobRecord], as_json: bool) -> int:
    """Where runs run as the executor reports them, and this member's Slurm jobs."""
    if as_json:
        dump(
            {
                "machines": [m.model_dump(mode="json") for m in machines],
                "jobs": [j.model_dump(mode="json") for j in jobs],
            }
        )
        return 0
    if not machines:
        print("the executor reports no machine")
    else:
        rows = [
            [
                m.name,
                m.kind,
                m.state,
                _cpus(m),
                _memory(m),
                m.gres or ",".join(g.index for g in m.gpus) or "-",
                str(m.running),
                ",".join(map(str, m.runs)) or "-",
            ]
            for m in machines
        ]
        headers = ["MACHINE", "KIND", "STATE", "CPUS", "MEMORY", "GPUS", "RUNNING", "YOURS"]
        print(table(rows, headers))
    if jobs:
        rows = [[j.job_id, str(j.run_id), j.state, j.reason or "-", j.node or "-"] for j in jobs]
        print()
        print(table(rows, ["JOB", "RUN", "STATE", "REASON", "NODE"]))
    return 0


def _cpus(machine: MachineRecord) -> str:
    """'2/4 allocated' on a Slurm node, '4 (load 0.50)' where the machine measured itself."""
    if machine.cpus is None:
        return "-"
    if machine.cpus_busy is not None:
        return f"{machine.cpus_busy}/{machine.cpus} allocated"
    load = f" (load {machine.load:.2f})" if machine.load is not None else ""
    return f"{machine.cpus}{load}"


def _memory(machine: MachineRecord) -> str:
    """Used of total, in the units a person reads."""
    total, used = machine.memory_total_mb, machine.memory_used_mb
    if total is None:
        return "-"
    return f"{size(used * MIB)}/{size(total * MIB)}" if used is not None else size(total * MIB)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = load_settings(args.home)
    if settings.executor != "celery":  # checked before a Lab touches the queue
        raise ValidationError.one("executor", "must be celery to start a worker")
    pico_nb.Lab.operator(settings=settings).serve_as_worker(args.name, args.slots, args.gpus)
    return 0


def read_password(args: argparse.Namespace) -> str:
    """Ask twice on a terminal; --password-stdin for scripts. Never echoed, never logged."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationError.one("password", "the two entries differ")
    return first


def as_lab_server_operator(args: argparse.Namespace) -> None:
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
    as_lab_server_operator(args)
    lab = pico_nb.Lab.operator(args.home)
    if args.action == "list":
        users = lab.users()
        if args.json:
            dump(users)
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
        print(table(rows, ["USER", "ROLE", "LOGIN", "CREATED"]))
        return 0
    if not args.name:
        raise ValidationError.one("name", "is required")
    if args.action == "add":
        user = lab.add_user(args.name, read_password(args), is_admin=args.admin)
        print(f"added {'admin' if user.is_admin else 'user'} {user.username}")
    elif args.action == "passwd":
        lab.set_password(args.name, read_password(args))
        print(f"password of {args.name} changed")
    elif args.action == "admin":
        user = lab.set_admin(args.name, not args.revoke)
        print(f"{user.username} is {'an admin' if user.is_admin else 'no longer an admin'}")
    else:
        lab.delete_user(args.name)
        print(f"deleted user {args.name}")
    return 0


def add_commands(add: AddCommand) -> None:
    """The operator commands and their arguments."""
    p = add("users", cmd_users, "manage hub accounts")
    p.add_argument("action", choices=["add", "list", "delete", "passwd", "admin"])
    p.add_argument("name", nargs="?")
    p.add_argument("--admin", action="store_true", help="with add: make an admin")
    p.add_argument("--revoke", action="store_true", help="with admin: take admin rights away")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    add(
        "workers",
        cmd_workers,
        "where runs run: Celery workers, or Slurm's nodes and your jobs, or this host",
    )

    p = add("worker", cmd_worker, "run a Celery worker here (executor = celery)", json_flag=False)
    p.add_argument("--name", help="unique worker name (default: this host's name)")
    p.add_argument("--slots", type=int, help="runs at once (default: one per GPU, or 1)")
    p.add_argument("--gpus", help="GPU ids this worker hands out, e.g. 0,1")
