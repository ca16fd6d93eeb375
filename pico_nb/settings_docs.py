"""The README's settings tables, generated from the fields of :class:`pico_nb.settings.Settings`.

Each table sits between ``<!-- settings: NAME -->`` and ``<!-- /settings -->`` in the README:
``pico`` holds the top-level settings, ``hub`` the lab server's (``[hub]`` and ``[hub.login]``,
with their ``pico-nb hub`` flags). ``python -m pico_nb.settings_docs --update README.md``
rewrites them; ``--check`` fails when they are out of date, as the fast tests do.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pico_nb.hub_settings import HubSettings
from pico_nb.settings import SettingField, setting_fields

BLOCK = re.compile(r"(<!-- settings: (\w+) -->\n)(.*?)(<!-- /settings -->)", re.S)
SAME_ON_WORKERS_NOTE = "**The same on every worker** (checked when a worker starts)."


def default_text(field: SettingField) -> str:
    """A default as a reader writes it: words for an empty one, the documented one if given."""
    extra = field.info.json_schema_extra
    if isinstance(extra, dict) and extra.get("default_doc"):
        return str(extra["default_doc"])
    return _value_text(field.default())


def _value_text(value: Any) -> str:
    """One value in a table cell."""
    if value is None or value in ("", []):
        return "none" if value is None else "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(f"`{item}`" for item in value)
    return f"`{value}`" if isinstance(value, str) else str(value)


def _cell(text: str) -> str:
    """Text that cannot end a table cell early."""
    return text.replace("|", "\\|").replace("\n", " ")


def _meaning(field: SettingField) -> str:
    """The field's description, and the rule that every worker must share it."""
    text = field.info.description or ""
    return f"{text} {SAME_ON_WORKERS_NOTE}" if field.marked("same_on_workers") else text


def _rows(fields: Iterable[SettingField], flags: bool) -> list[str]:
    """Markdown table lines: name, environment (and flag), default, meaning."""
    head = ["setting", "environment", *(["`pico-nb hub`"] if flags else []), "default", "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for field in fields:
        flag = "--" + field.path[-1].replace("_", "-") if len(field.path) == 2 else ""
        cells = [f"`{field.name}`", f"`{field.env}`"]
        cells += [f"`{flag}`" if flag else ""] if flags else []
        cells += [default_text(field), _meaning(field)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def tables() -> dict[str, str]:
    """Each generated table by its marker name."""
    top = [f for f in setting_fields() if f.path[0] != "hub"]
    hub = list(setting_fields(HubSettings, ("hub",)))
    return {
        "pico": "\n".join(_rows(top, flags=False)) + "\n",
        "hub": "\n".join(_rows(hub, flags=True)) + "\n",
    }


def updated(text: str) -> str:
    """The README with every settings table regenerated; an unknown table name is an error."""
    generated = tables()

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in generated:
            raise ValueError(f"unknown settings table {name!r}: expected {sorted(generated)}")
        return match.group(1) + generated[name] + match.group(4)

    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    """Rewrite or check the tables of a README."""
    parser = argparse.ArgumentParser(prog="python -m pico_nb.settings_docs")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", metavar="README", type=Path, help="rewrite the tables")
    mode.add_argument("--check", metavar="README", type=Path, help="fail if they are stale")
    args = parser.parse_args(argv)
    path: Path = args.update or args.check
    text = path.read_text("utf-8")
    fresh = updated(text)
    if args.update:
        path.write_text(fresh, "utf-8")
        return 0
    if fresh != text:
        print(f"{path}: settings tables are out of date; run --update", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
