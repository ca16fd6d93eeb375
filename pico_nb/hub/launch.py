"""`pico-nb hub`: start JupyterHub, its proxy and the pico service, and print where to go."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from pico_nb.errors import PicoError
from pico_nb.hub.config import HubOptions, check_isolation, configure
from pico_nb.os_accounts import become_service_account, setup_service
from pico_nb.settings import ENV_PREFIX, load_settings

FLAGS = {
    "ip": "public address (default 127.0.0.1; 0.0.0.0 serves the network: use TLS then)",
    "port": "public port (default 8000)",
    "ssl_cert": "TLS certificate file (PEM)",
    "ssl_key": "TLS private key file (PEM)",
    "cull_idle_seconds": "stop user servers idle this long (default 3600; 0 = never); runs go on",
    "state_dir": "hub database, cookie secret and user folders (default <data home>/hub)",
    "hub_port": "the hub's internal port on 127.0.0.1 (default 8081)",
    "proxy_api_port": "the proxy's internal API port on 127.0.0.1 (default 8001)",
    "service_port": "the pico service's port on 127.0.0.1 (default 8082)",
    "notebooks": "folder holding dashboard.ipynb, copied into each user's folder",
    "single_account": "run every member's server as this account: NO isolation between members",
}
SINGLE_ACCOUNT_WARNING = (
    "warning: --single-account: every member's notebook runs as {user} and can read every "
    "experiment, run log and password hash of the lab"
)


def add_commands(sub: Any) -> None:
    """Register `pico-nb hub` on the CLI's subparsers."""
    p = sub.add_parser("hub", help="run the multi-user lab server", description=__doc__)
    defaults = {f.name: f.default for f in fields(HubOptions)}
    for name, help_text in FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(defaults[name], bool):
            p.add_argument(flag, dest=name, action="store_const", const=True, help=help_text)
            continue
        kind = int if isinstance(defaults[name], int) else str
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
    """Turn flags into PICO_NB_HUB_* settings, then run the hub in this process until stopped."""
    if getattr(args, "home", None):
        os.environ[ENV_PREFIX + "HOME"] = os.path.abspath(os.path.expanduser(args.home))
    for f in fields(HubOptions):
        value = getattr(args, f.name, None)
        if value is not None:
            os.environ["PICO_NB_HUB_" + f.name.upper()] = str(value)
    try:
        from jupyterhub.app import JupyterHub
    except ImportError:
        raise PicoError("the lab server needs the hub extra: pip install 'pico-nb[hub]'") from None
    from traitlets.config import Config

    options = HubOptions.from_env()
    check_isolation(options)
    if options.single_account:
        print(SINGLE_ACCOUNT_WARNING.format(user=getpass.getuser()), file=sys.stderr, flush=True)
        _announce(options)
    else:
        os.environ[ENV_PREFIX + "MEMBER_ACCOUNTS"] = "true"
        as_service_account(lambda: _announce(options))  # the database is made by its owner
    config = Config()
    configure(config, options)
    argv = [f"--config={os.path.abspath(args.config)}"] if args.config else []
    JupyterHub.instance(config=config)  # launch_instance runs this instance
    JupyterHub.launch_instance(argv)
    return 0


def _announce(options: HubOptions) -> None:
    """Say where the lab is, and how to make the first account if there is none yet."""
    from pico_nb.lab import Lab

    accounts = [u for u in Lab.operator().users() if u.has_password]
    print(f"pico lab server: {options.public_url}", flush=True)
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
