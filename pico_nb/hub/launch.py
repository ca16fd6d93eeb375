"""`pico-nb hub`: start JupyterHub, its proxy and the pico service, and print where to go."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from pico_nb.contract.errors import PicoError
from pico_nb.hub.config import configure, lab_server_settings, public_url
from pico_nb.hub_settings import HubSettings
from pico_nb.os_accounts import become_service_account, setup_service
from pico_nb.settings import ENV_PREFIX, Settings, load_settings, setting_fields
from pico_nb.settings_docs import default_text

FLAGS = {f.path[1]: f for f in setting_fields(HubSettings, ("hub",)) if len(f.path) == 2}
SINGLE_ACCOUNT_WARNING = (
    "warning: --single-account: every member's notebook runs as {user} and can read every "
    "experiment, run log and password hash of the lab"
)


def add_commands(sub: Any) -> None:
    """Register `pico-nb hub` on the CLI's subparsers."""
    p = sub.add_parser("hub", help="run the multi-user lab server", description=__doc__)
    for name, field in FLAGS.items():  # [hub.login] has no flags
        flag, kind = "--" + name.replace("_", "-"), field.info.annotation
        text = f"{field.info.description} Default {default_text(field)}; {field.env}."
        help_text = text.replace("%", "%%")  # argparse formats help with %
        if kind is bool:
            p.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
            continue
        p.add_argument(flag, dest=name, type=kind, help=help_text)
    p.add_argument("--config", help="an extra JupyterHub config file, applied last")
    p.set_defaults(handler=cmd_hub)
    setup = sub.add_parser(
        "hub-setup",
        help="as root: create the service account, the members' group and the sudo rule",
        description=cmd_hub_setup.__doc__,
    )
    setup.set_defaults(handler=cmd_hub_setup)


def cmd_hub_setup(args: argparse.Namespace) -> int:
    """Prepare this machine for an isolated lab server (see README, "Lab server")."""
    if getattr(args, "home", None):
        os.environ[ENV_PREFIX + "HOME"] = os.path.abspath(os.path.expanduser(args.home))
    for line in setup_service(load_settings().home.expanduser().resolve()):
        print(line)
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    """Read the settings with the flags over them, then run the hub here until stopped."""
    if getattr(args, "home", None):
        os.environ[ENV_PREFIX + "HOME"] = os.path.abspath(os.path.expanduser(args.home))
    flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        raise PicoError("the lab server needs the hub extra: pip install 'pico-nb[hub]'") from None
    from traitlets.config import Config

    settings = lab_server_settings(**flags)
    if settings.hub.single_account:
        print(SINGLE_ACCOUNT_WARNING.format(user=getpass.getuser()), file=sys.stderr, flush=True)
        _announce(settings)
    else:
        os.environ[ENV_PREFIX + "MEMBER_ACCOUNTS"] = "true"
        as_service_account(lambda: _announce(settings))  # the database is made by its owner
    config = Config()
    configure(config, settings)
    argv = [f"--config={os.path.abspath(args.config)}"] if args.config else []
    JupyterHub.instance(config=config)  # launch_instance runs this instance
    JupyterHub.launch_instance(argv)
    return 0


def _announce(settings: Settings) -> None:
    """Say where the lab is, and how to make the first account if there is none yet."""
    from pico_nb.lab import Lab

    accounts = [u for u in Lab.operator().users() if u.has_password]
    print(f"pico lab server: {public_url(settings.hub)}", flush=True)
    if not accounts:
        print("no accounts yet: create the first admin with `pico-nb users add NAME --admin`")


def as_service_account(task: Callable[[], None]) -> None:
    """Run a task in a child that has dropped root for the service account, and wait for it."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become_service_account()
            task()
            code = 0
        except PicoError as exc:
            print(f"error: {exc}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise PicoError("the service account could not open the database (see above)")


def main(argv: list[str] | None = None) -> int:
    """`python -m pico_nb.hub.launch hub ...`, until the CLI registers the command itself."""
    parser = argparse.ArgumentParser(prog="pico-nb")
    parser.add_argument("--home")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
