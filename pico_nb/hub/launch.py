"""`pico-nb hub`: start JupyterHub, its proxy and the pico service, and print where to go."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from typing import Any

from pico_nb.errors import PicoError
from pico_nb.hub.config import HubOptions, configure
from pico_nb.settings import ENV_PREFIX

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
}


def add_commands(sub: Any) -> None:
    """Register `pico-nb hub` on the CLI's subparsers."""
    p = sub.add_parser("hub", help="run the multi-user lab server", description=__doc__)
    defaults = {f.name: f.default for f in fields(HubOptions)}
    for name, help_text in FLAGS.items():
        kind = int if isinstance(defaults[name], int) else str
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=help_text)
    p.add_argument("--config", help="an extra JupyterHub config file, applied last")
    p.set_defaults(handler=cmd_hub)


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

    config = Config()
    options = configure(config)
    _announce(options)
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


def main(argv: list[str] | None = None) -> int:
    """`python -m pico_nb.hub.launch hub ...`, until the CLI registers the command itself."""
    parser = argparse.ArgumentParser(prog="pico-nb")
    parser.add_argument("--home")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
