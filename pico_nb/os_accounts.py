"""Operating-system accounts of a lab server: one locked account per member, one service account.

The lab server's isolation rests on the kernel, not on the application: each member's notebook
server and runs execute as ``pico-<name>``; the service account ``pico`` alone owns the data
home, the database and the logs; the only bridge between them is one sudo rule that lets the
service account start :mod:`pico_nb.execution.runas` as a member (never as root). Everything
here shells out to the standard Debian tools (``useradd``, ``groupadd``, ``visudo``) with argv
lists, the way The Littlest JupyterHub manages its users.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pico_nb.contract.errors import PicoError, ValidationError

SERVICE_ACCOUNT = "pico"
MEMBERS_GROUP = "pico-members"
MEMBER_PREFIX = "pico-"
SUDOERS_FILE = Path("/etc/sudoers.d/pico-nb")
NOLOGIN = "/usr/sbin/nologin"
HELPER_NAME = "pico-nb-runas"
_ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]*")
_MAX_ACCOUNT = 32  # useradd's limit on Linux


def is_root() -> bool:
    """Only root can create accounts and spawn servers as other users."""
    return os.geteuid() == 0


def member_account(username: str) -> str:
    """The OS account a member's servers and runs execute as."""
    return MEMBER_PREFIX + username


def check_member_name(username: str) -> str:
    """A pico user name that also makes a valid OS account name, or a ValidationError."""
    account = member_account(username)
    if not _ACCOUNT.fullmatch(account) or len(account) > _MAX_ACCOUNT:
        raise ValidationError.one(
            "name",
            "must be lower-case letters, digits, '_' or '-', starting with a letter, and at "
            f"most {_MAX_ACCOUNT - len(MEMBER_PREFIX)} characters, to make an OS account",
        )
    return account


def account_exists(name: str, lookup: Callable[[str], object] = pwd.getpwnam) -> bool:
    """Whether the OS knows this account (or, with grp.getgrnam, this group)."""
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def account_home(name: str) -> Path:
    """The account's home folder from the password database."""
    return Path(pwd.getpwnam(name).pw_dir)


def helper_path() -> Path:
    """The one command the sudo rule allows: the runas helper of this installation."""
    return Path(sys.executable).parent / HELPER_NAME


def sudoers_rule(helper: Path) -> str:
    """The whole privileged path: the service account may start the helper as a member."""
    return (
        "# pico_nb: the pico service starts each run's pipeline as the member who owns it.\n"
        "# The helper refuses root, keeps only allow-listed variables and execs the pipeline.\n"
        f"Defaults!{helper} !use_pty\n"
        f"{SERVICE_ACCOUNT} ALL=(%{MEMBERS_GROUP}) NOPASSWD: {helper}\n"
    )


def _run(argv: list[str]) -> None:
    """Run an account tool; its complaint becomes a one-line PicoError."""
    answer = subprocess.run(argv, capture_output=True, text=True, check=False)
    if answer.returncode != 0:
        message = (answer.stderr or answer.stdout).strip().splitlines()
        raise PicoError(f"{argv[0]} failed: {message[-1] if message else answer.returncode}")


def serves_lab(home: Path) -> bool:
    """Whether this data home is a set-up lab server's: it belongs to the service account."""
    try:
        return home.stat().st_uid == pwd.getpwnam(SERVICE_ACCOUNT).pw_uid
    except (OSError, KeyError):
        return False


def setup_problem(home: Path | None) -> str | None:
    """Why this machine cannot run an isolated lab server on this data home, or None."""
    helper = helper_path()
    if not is_root():
        return "the lab server must start as root to run each member's server as their account"
    if not account_exists(SERVICE_ACCOUNT) or not account_exists(MEMBERS_GROUP, grp.getgrnam):
        return f"the service account {SERVICE_ACCOUNT!r} or group {MEMBERS_GROUP!r} is missing"
    if shutil.which("sudo") is None:
        return "sudo is not installed (apt-get install sudo)"
    try:
        rule = SUDOERS_FILE.read_text()
    except OSError:
        return f"{SUDOERS_FILE} is missing"
    if sudoers_rule(helper) != rule:
        return f"{SUDOERS_FILE} does not name this installation's helper {helper}"
    if home is None or not serves_lab(home):
        return f"the data home {home} does not belong to the service account {SERVICE_ACCOUNT!r}"
    return None


def _check_reachable(path: Path, what: str, advice: str) -> None:
    """The service and member accounts must be able to walk down to path."""
    for parent in reversed(path.parents):
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            raise PicoError(
                f"{what} {path} is inside {parent}, which other accounts cannot enter; {advice}"
            )


def setup_service(home: Path) -> list[str]:
    """Create the members' group, the service account owning the data home, and the sudo rule."""
    if not is_root():
        raise PicoError("run the setup as root (sudo pico-nb hub-setup)")
    if shutil.which("sudo") is None:
        raise PicoError("sudo is not installed: apt-get install sudo")
    _check_reachable(home, "the data home", "choose another, e.g. PICO_NB_HOME=/srv/pico-nb")
    python = Path(sys.executable).resolve()
    _check_reachable(python, "Python", "install pico-nb with a Python every account can run")
    _check_reachable(Path(__file__).resolve(), "pico_nb", "install it where every account can read")
    done = []
    if not account_exists(MEMBERS_GROUP, grp.getgrnam):
        _run(["groupadd", "--system", MEMBERS_GROUP])
        done.append(f"created group {MEMBERS_GROUP}")
    if not account_exists(SERVICE_ACCOUNT):
        _run(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", str(home), "--shell", NOLOGIN),
                *("--comment", "pico lab service", SERVICE_ACCOUNT),
            ]
        )
        done.append(f"created service account {SERVICE_ACCOUNT}")
    elif account_home(SERVICE_ACCOUNT) != home:  # the data home moved: so does its owner's home
        _run(["usermod", "--home", str(home), SERVICE_ACCOUNT])
    home.mkdir(parents=True, exist_ok=True)
    service = pwd.getpwnam(SERVICE_ACCOUNT)
    os.chown(home, service.pw_uid, service.pw_gid)
    home.chmod(0o700)
    done.append(f"{home} belongs to {SERVICE_ACCOUNT}, mode 0700")
    write_sudoers(helper_path())
    done.append(f"wrote {SUDOERS_FILE}")
    return done


def write_sudoers(helper: Path) -> None:
    """Install the rule atomically, and only once visudo has accepted it."""
    SUDOERS_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=SUDOERS_FILE.parent, prefix=".pico-nb.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(sudoers_rule(helper))
        os.chmod(temp, 0o440)
        _run(["visudo", "--check", "--quiet", "--file", temp])
        os.replace(temp, SUDOERS_FILE)
    finally:
        Path(temp).unlink(missing_ok=True)


def ensure_member(username: str, data_folders: list[Path]) -> str:
    """Create the member's locked account (private home 0700) and their own data folders.

    A data folder belongs to the member and to the service account's group (2750): the service
    reads inputs and results there, other members cannot enter it.
    """
    account = check_member_name(username)
    if not account_exists(account):
        _run(
            [
                *("useradd", "--create-home", "--user-group", "--groups", MEMBERS_GROUP),
                *("--shell", NOLOGIN, "--comment", f"pico lab member {username}", account),
            ]
        )
    else:
        _run(["usermod", "--append", "--groups", MEMBERS_GROUP, account])
    member = pwd.getpwnam(account)
    Path(member.pw_dir).chmod(0o700)
    service_gid = grp.getgrnam(SERVICE_ACCOUNT).gr_gid
    for folder in data_folders:
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, member.pw_uid, service_gid)
        folder.chmod(0o2750)
    return account


def become_service_account() -> None:
    """Drop root for the rest of this process, so every file it makes belongs to the service."""
    service = pwd.getpwnam(SERVICE_ACCOUNT)
    os.setgroups([])
    os.setgid(service.pw_gid)
    os.setuid(service.pw_uid)
    os.environ["HOME"] = service.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = SERVICE_ACCOUNT
