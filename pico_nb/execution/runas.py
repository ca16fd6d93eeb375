"""How a pipeline process is started: its environment allow-list, and the member's account.

In the embedded default the supervisor starts the pipeline itself. On an isolated lab server
(``member_accounts``) the supervisor, running as the service account, starts it through the one
privileged path: ``sudo -n -u pico-<owner> pico-nb-runas …``. This module's :func:`main` is that
helper. It runs as the member (sudo's rule allows members only, never root), keeps only the
allow-listed variables it is given, makes and enters the output folder as the member (so the
kernel, not the application, decides where a run may write), and starts the pipeline in a
process group of its own. It stays as the pipeline's parent to carry stops across the account
boundary: sudo relays the supervisor's SIGTERM to it and it forwards that to the group; when
the supervisor escalates with SIGKILL, sudo dies and the kernel's parent-death signal makes the
helper SIGKILL the group. Its exit status is the pipeline's, so the record reads the same.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico_nb.os_accounts import account_exists, helper_path, member_account

if TYPE_CHECKING:
    from pico_nb.settings import Settings

ALLOWED_ENV = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONUNBUFFERED",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "SLURM_CONF",  # which cluster a member's sbatch and scancel talk to
    }
)
"""Everything a pipeline may inherit; HOME, USER and LOGNAME come from the account it runs as."""
ALLOWED_PREFIXES = ("LC_",)
OUTPUT_UMASK = 0o027  # results: the member writes, the service group reads, nobody else
_PR_SET_PDEATHSIG = 1
_EXEC_FAILED = 127


def allowed(name: str) -> bool:
    """Whether a variable may reach a pipeline: never a token, a password or a URL."""
    return name in ALLOWED_ENV or name.startswith(ALLOWED_PREFIXES)


def pipeline_env(environ: Mapping[str, str], account: pwd.struct_passwd) -> dict[str, str]:
    """The allow-listed part of environ plus the identity of the account that runs the pipeline."""
    env = {k: v for k, v in environ.items() if allowed(k)}
    env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def owner_account(settings: Settings, username: str) -> str | None:
    """The account a user's runs execute as: their own on a lab server, else the launcher's."""
    return member_account(username) if settings.member_accounts else None


def pipeline_command(
    plan: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str], str]:
    """(argv, env, cwd) to start a plan's pipeline: directly, or as its owner through sudo."""
    env = dict(environ)
    if plan["gpus"] is not None:  # "" hides a GPU machine's GPUs from a CPU run
        env["CUDA_VISIBLE_DEVICES"] = plan["gpus"]
    account = plan.get("account")
    if not account:
        Path(plan["output_path"]).mkdir(parents=True, exist_ok=True)
        return list(plan["argv"]), pipeline_env(env, pwd.getpwuid(os.getuid())), plan["output_path"]
    argv, env = as_member(account, plan["output_path"], plan["argv"], env)
    return argv, env, "/"


def as_member(
    account: str, cwd: str, argv: list[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run a command as a member through the one privileged path: sudo and
    the helper, in ``cwd`` (made by the member if missing), with only allow-listed variables.
    The pipeline goes this way, and so do a member's Slurm jobs (sbatch, scancel)."""
    if not account_exists(account):  # e.g. a worker machine the lab's accounts do not reach
        raise OSError(f"the account {account} does not exist on this machine")
    sudo = shutil.which("sudo") or "/usr/bin/sudo"
    passed = [f"--env={k}={v}" for k, v in sorted(environ.items()) if allowed(k)]
    command = [sudo, "-n", "-u", account, "--", str(helper_path()), f"--cwd={cwd}", *passed]
    return [*command, "--", *argv], {"PATH": environ.get("PATH", os.defpath)}


def _die_with_parent(signum: int) -> None:
    """Ask the kernel for signum when sudo (our parent) dies, e.g. by the supervisor's SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signum)


def _exit_like(status: int) -> None:
    """End with the pipeline's own status, so sudo and the supervisor see what it did."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig != signal.SIGKILL:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status))


def _start(argv: list[str], env: dict[str, str]) -> int:
    """Fork the pipeline into a process group of its own; the child execs or reports why not."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(1, f"# could not start {argv[0]}: {exc.strerror}\n".encode())
        os._exit(_EXEC_FAILED)
    with contextlib.suppress(OSError):  # the child may have done it already
        os.setpgid(pid, pid)
    return pid


def _run_as_parent(argv: list[str], env: dict[str, str]) -> int:
    """Start the pipeline and forward stops to its group until it ends; return its status.

    The handlers are in place before the fork, so a stop that arrives at any moment reaches
    the pipeline; a stop that arrives before it exists is applied as soon as it does.
    """
    group: dict[str, int] = {}

    def send(signum: int) -> None:
        if "pgid" not in group:
            group["pending"] = signum
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group["pgid"], signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda n, _f: send(n))
    signal.signal(signal.SIGUSR1, lambda _n, _f: send(signal.SIGKILL))
    _die_with_parent(signal.SIGUSR1)
    if os.getppid() == 1:  # sudo died before we asked to be told
        group["pending"] = signal.SIGKILL
    group["pgid"] = _start(argv, env)
    if "pending" in group:
        send(group["pending"])
    _, status = os.waitpid(group["pgid"], 0)
    send(signal.SIGKILL)  # leftovers of the pipeline die with it
    return status


def _enter(folder: str) -> None:
    """Enter the output folder as the member, making it only if it is missing: whatever a path
    now points to, the kernel checks the member's own rights on it."""
    try:
        os.chdir(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
        os.chdir(folder)


def main(argv: list[str] | None = None) -> None:
    """The sudo helper: as the member, enter the output folder and run the pipeline there."""
    parser = argparse.ArgumentParser(prog="pico-nb-runas", description=__doc__)
    parser.add_argument("--cwd", required=True, help="the run's output folder")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE, allow-listed")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if os.getuid() == 0 or os.geteuid() == 0:
        parser.exit(2, "pico-nb-runas: refusing to run a pipeline as root\n")
    if not command:
        parser.exit(2, "pico-nb-runas: no pipeline command given\n")
    given = dict(item.partition("=")[::2] for item in args.env)
    env = pipeline_env(given, pwd.getpwuid(os.getuid()))
    os.umask(OUTPUT_UMASK)
    try:
        _enter(args.cwd)
    except OSError as exc:
        sys.stdout.write(f"# could not enter the output folder {args.cwd}: {exc.strerror}\n")
        sys.stdout.flush()
        sys.exit(_EXEC_FAILED)
    sys.stdout.flush()
    _exit_like(_run_as_parent(command, env))


if __name__ == "__main__":
    main()
