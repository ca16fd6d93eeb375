"""The `pico-nb` parser and the one place a command's errors become a line for the person."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any

import pico_nb.cli
from pico_nb.cli import experiments, operators, runs
from pico_nb.cli.common import Handler
from pico_nb.contract.errors import PicoError, ValidationError
from pico_nb.demo import DELEGATED, add_demo_commands, run_delegated
from pico_nb.text import error_text


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; each maps to one Lab call."""
    parser = argparse.ArgumentParser(prog="pico-nb", description=pico_nb.cli.__doc__)
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

    for commands in (experiments, runs, operators):
        commands.add_commands(add)

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
