"""What one run's Slurm batch job is: its script, the options it asks Slurm for, and where
its own output goes.

The script is a Python script that becomes the run's supervisor on the compute node
(:mod:`pico_nb.execution.slurm_job`). Submitted as the lab's account, it is given the lab's
settings and writes to the database itself; submitted as the run's owner (``member_accounts``),
it is told only a few timings, the pico service's address and its run's token, and reports
through the service (:mod:`pico_nb.execution.job_desk`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pico_nb.execution.runas import owner_account
from pico_nb.file_modes import private_folder

if TYPE_CHECKING:
    from pico_nb.models import Run
    from pico_nb.settings import Settings

JOB_PREFIX = "pico-nb-run-"
JOB_SETTINGS = ("heartbeat_seconds", "stop_grace_seconds", "db_outage_seconds", "slurm_conf")
"""All a job running as the owner is told of the lab's settings: no database, no broker."""


def batch_script(settings: Settings, run_id: int, token: str | None = None) -> str:
    """The job's script: this run's supervisor, in the Python the compute nodes run. With a
    token the job runs as the owner and reports through the pico service."""
    python = settings.slurm_python or sys.executable
    if token is None:
        call = f"main({run_id}, {settings.model_dump_json()!r}, WAKE)"
    else:
        told = settings.model_dump_json(include=set(JOB_SETTINGS))
        call = f"main_as_owner({run_id}, {report_url(settings)!r}, {token!r}, {told!r}, WAKE)"
    return (
        f"#!{python}\n"
        f"# pico-nb run {run_id}: its supervisor on the compute node\n"
        "import sys\n"
        "from pico_nb.execution.slurm_entry import WAKE\n"
        f"from pico_nb.execution.slurm_job import {call.split('(')[0]}\n"
        f"sys.exit({call})\n"
    )


def report_url(settings: Settings) -> str:
    """Where a job running as the owner reaches the pico service: the setting, or, in the
    service itself, the address the hub gave it (right when the hub node runs the jobs)."""
    if settings.slurm_report_url:
        return settings.slurm_report_url
    here = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not here:
        raise ValueError(
            "jobs that run as their owner report through the pico service: set "
            "slurm_report_url to its address as the compute nodes reach it"
        )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/pico/")
    return here.rstrip("/") + "/" + prefix.strip("/") + "/"


def job_output(settings: Settings, run: Run) -> Path:
    """Where Slurm writes the job's own output (the supervisor's, not the run's log): the
    lab's private logs, or the run's own folder for a job that runs as the owner."""
    if owner_account(settings, run.user.username):
        return Path(run.output_path) / "slurm-%j.out"
    return settings.home / "logs" / "supervisors" / f"slurm_run_{run.id}.out"


def sbatch_options(settings: Settings, run: Run) -> list[str]:
    """What the job asks Slurm for; one task on one node, never requeued behind our back."""
    output = job_output(settings, run)
    as_owner = owner_account(settings, run.user.username) is not None
    if not as_owner:
        private_folder(output.parent)
    options = [
        f"--job-name={JOB_PREFIX}{run.id}",
        f"--output={output}",
        f"--chdir={output.parent if as_owner else '/tmp'}",
        "--export=NONE",  # nothing of ours (tokens, URLs) reaches the job's environment
        "--no-requeue",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={settings.slurm_cpus_per_run}",
    ]
    for flag, value in (
        ("--partition", settings.slurm_partition),
        ("--account", settings.slurm_account),
        ("--qos", settings.slurm_qos),
        ("--time", settings.slurm_time_limit),
        ("--mem", settings.slurm_memory),
    ):
        if value:
            options.append(f"{flag}={value}")
    if run.needs_gpu:
        options.append("--gres=gpu:1")
    return options + list(settings.slurm_options)
