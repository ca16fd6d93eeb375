"""What every `pico-nb` command shares: the Lab it acts through and how it prints."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pico_nb
from pico_nb.contract.errors import ValidationError
from pico_nb.schemas import Record, RunRecord

if TYPE_CHECKING:
    from pico_nb.lab import Lab

Handler = Callable[[argparse.Namespace], int]


class AddCommand(Protocol):
    """Registers one subcommand: each command module declares its own arguments."""

    def __call__(
        self, name: str, handler: Handler, help_text: str, json_flag: bool = True
    ) -> argparse.ArgumentParser: ...


def absolute(path: str) -> str:
    """Relative folders on the command line mean relative to where the user stands."""
    return os.path.abspath(os.path.expanduser(path))


def settings_pairs(pairs: Sequence[str] | None) -> dict[str, Any]:
    """--set key=value pairs; values stay text and the spec types them."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError.one("--set", f"expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def dump(value: Record | Sequence[Record] | dict[str, Any]) -> None:
    """The --json form: records as JSON with ISO timestamps."""
    if isinstance(value, Sequence):
        data: Any = [v.model_dump(mode="json") for v in value]
    elif isinstance(value, Record):
        data = value.model_dump(mode="json")
    else:
        data = value
    print(json.dumps(data, indent=2, sort_keys=True))


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned table for terminals."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def open_lab(args: argparse.Namespace) -> Lab:
    """The Lab the command acts through (the lab server's, inside a hub user server),
    reconciled first: a command shows no run as running whose supervisor has gone."""
    lab = pico_nb.Lab(args.home, args.user)
    lab.reconcile()
    return lab


def pick_run(lab: Lab, experiment_id: int, number: int | None) -> RunRecord:
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
