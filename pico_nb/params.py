"""Which spec the lab's runs use: the built-in PICO spec, or a lab's own file for its own script."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.spec import PipelineSpec, builtin_spec, spec_from_dict


def load_spec(path: str | Path | None = None) -> PipelineSpec:
    """The built-in PICO spec, or a lab's own from a TOML or JSON file."""
    if path is None:
        return builtin_spec()
    path = Path(path).expanduser().resolve()
    try:
        text = path.read_text("utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        # {spec_dir} lets a lab keep its script next to its spec file.
        data["command"] = [
            str(c).replace("{spec_dir}", str(path.parent)) for c in data.get("command", [])
        ]
        return spec_from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError.one("pipeline_spec", f"{path}: {exc}") from None
