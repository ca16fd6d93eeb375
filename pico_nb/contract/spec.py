"""A pipeline spec: its command, parameters and cross-field rules, read from TOML or JSON.

The built-in pipeline's spec is `pico_spec.toml`; it is the contract between the app, which
validates parameters and builds argv from it, and the pipeline, which parses argv with it.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from typing import Any

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.param import Param, param_from


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: one flag needs another on, or one number is at least another."""

    param: str
    why: str
    requires: str | None = None
    at_least: str | None = None

    def broken(self, values: Mapping[str, Any]) -> bool:
        """True when the values break this rule."""
        if self.requires:
            return bool(values[self.param]) and not values[self.requires]
        if self.at_least is None:
            raise ValueError(f"rule on {self.param!r} needs `requires` or `at_least`")
        return values[self.param] < values[self.at_least]


@dataclass(frozen=True)
class GpuNeed:
    """Which runs need a GPU: those whose ``param`` takes one of ``values``."""

    param: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline: the command that runs it and the parameters it takes."""

    name: str
    title: str
    command: tuple[str, ...]
    params: tuple[Param, ...]
    rules: tuple[Rule, ...] = ()
    version: str = ""
    gpu: GpuNeed | None = None
    by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.params})

    def defaults(self) -> dict[str, Any]:
        """A fresh dict of every default, safe to mutate."""
        return {p.name: json.loads(json.dumps(p.default)) for p in self.params}

    def needs_gpu(self, values: Mapping[str, Any]) -> bool:
        """Whether a run with these (validated) values must wait for a GPU."""
        return self.gpu is not None and values.get(self.gpu.param) in self.gpu.values

    def groups(self) -> dict[str, list[Param]]:
        """Parameters by group in spec order, as forms lay them out."""
        out: dict[str, list[Param]] = {}
        for p in self.params:
            out.setdefault(p.group, []).append(p)
        return out

    def validate(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Complete, typed parameters, or one ValidationError naming every bad field."""
        if values is not None and not isinstance(values, Mapping):
            raise ValidationError.one("params", "must be a mapping of parameter name to value")
        values = dict(values or {})
        errors: dict[str, str] = {}
        for key in values:
            if key not in self.by_name:
                errors[key] = f"unknown parameter for pipeline {self.name}"
        out = self.defaults()
        for p in self.params:
            if p.name in values:
                try:
                    out[p.name] = p.coerce(values[p.name])
                except ValueError as exc:
                    errors[p.name] = str(exc)
        for rule in self.rules:
            names = (rule.param, rule.requires or rule.at_least)
            if not any(n in errors for n in names) and rule.broken(out):
                errors[rule.param] = rule.why
        if errors:
            raise ValidationError(errors)
        return out

    def changed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Only the values that differ from the defaults, for compact display and storage."""
        defaults = self.defaults()
        return {k: v for k, v in values.items() if defaults.get(k) != v}

    def base_command(self) -> list[str]:
        """The command with `{python}` resolved to this interpreter."""
        return [sys.executable if part == "{python}" else part for part in self.command]

    def to_argv(self, values: Mapping[str, Any], data_path: str, out_path: str) -> list[str]:
        """The full command as the original PICO script is called; never run through a shell."""
        typed = self.validate(values)
        argv = [*self.base_command(), "--data_path", str(data_path), "--out_path", str(out_path)]
        for p in self.params:
            argv += p.to_tokens(typed[p.name])
        return argv

    def parse_argv(self, argv: Sequence[str]) -> tuple[str, str, dict[str, Any]]:
        """Read flags in the original form back: (data_path, out_path, typed params)."""
        raw: dict[str, Any] = {}
        paths: dict[str, str] = {}
        i = 0
        while i < len(argv):
            token = argv[i]
            if not token.startswith("--"):
                raise ValidationError.one(token, "unexpected argument")
            name = token[2:]
            if name in ("data_path", "out_path"):
                count = 1
            elif name in self.by_name:
                p = self.by_name[name]
                count = p.length if p.kind == "int_list" and p.argv_style == "tokens" else 1
            else:
                raise ValidationError.one(name, f"unknown parameter for pipeline {self.name}")
            chunk = list(argv[i + 1 : i + 1 + count])
            if len(chunk) < count or any(c.startswith("--") for c in chunk):
                raise ValidationError.one(name, f"needs {count} value(s)")
            if name in ("data_path", "out_path"):
                paths[name] = chunk[0]
            else:
                raw[name] = chunk if count > 1 else chunk[0]
            i += 1 + count
        missing = [n for n in ("data_path", "out_path") if n not in paths]
        if missing:
            raise ValidationError({n: "is required" for n in missing})
        return paths["data_path"], paths["out_path"], self.validate(raw)

    def to_dict(self) -> dict[str, Any]:
        """The spec in the TOML/JSON file form, so a remote client can rebuild it exactly."""
        params = []
        for p in self.params:
            item: dict[str, Any] = {
                "name": p.name,
                "type": p.kind,
                "default": p.default,
                "group": p.group,
                "help": p.help,
                "minimum": list(p.minimum) if isinstance(p.minimum, tuple) else p.minimum,
                "maximum": p.maximum,
                "exclusive_minimum": p.exclusive_minimum,
                "choices": list(p.choices),
                "length": p.length,
                "labels": list(p.labels),
                "argv": p.argv_style,
                "pattern": p.pattern,
                "pattern_help": p.pattern_help,
                "unit": p.unit or None,
                "frame": p.frame,
            }
            params.append({k: v for k, v in item.items() if v is not None and v != []})
        return {
            "name": self.name,
            "title": self.title,
            "command": list(self.command),
            "version": self.version,
            "params": params,
            "rules": [{k: v for k, v in vars(r).items() if v is not None} for r in self.rules],
            **(
                {"gpu": {"param": self.gpu.param, "values": list(self.gpu.values)}}
                if self.gpu
                else {}
            ),
        }

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the params object, so forms and the REST API agree with validate()."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.title,
            "type": "object",
            "additionalProperties": False,
            "properties": {p.name: p.json_schema() for p in self.params},
            "x-rules": [{k: v for k, v in vars(r).items() if v is not None} for r in self.rules],
        }


def spec_from_dict(data: Mapping[str, Any], version: str = "") -> PipelineSpec:
    """Build a spec from parsed TOML/JSON data."""
    params = tuple(param_from(p) for p in data.get("params", ()))
    names = {p.name for p in params}
    rules = tuple(Rule(**r) for r in data.get("rules", ()))
    for rule in rules:
        for ref in (rule.param, rule.requires, rule.at_least):
            if ref is not None and ref not in names:
                raise ValueError(f"rule refers to unknown parameter {ref!r}")
    command = data.get("command")
    if not command or not isinstance(command, list):
        raise ValueError("a pipeline spec needs a command list")
    gpu = data.get("gpu")
    if gpu is not None and gpu.get("param") not in names:
        raise ValueError(f"gpu refers to unknown parameter {gpu.get('param')!r}")
    return PipelineSpec(
        name=data.get("name", "custom"),
        title=data.get("title", data.get("name", "custom")),
        command=tuple(str(c) for c in command),
        params=params,
        rules=rules,
        version=str(data.get("version", version)),
        gpu=GpuNeed(gpu["param"], tuple(gpu.get("values", ()))) if gpu else None,
    )


@cache
def builtin_spec() -> PipelineSpec:
    """The built-in PICO spec, parsed once per process; versioned as the installed package."""
    text = resources.files("pico_nb").joinpath("pico_spec.toml").read_text("utf-8")
    return spec_from_dict(tomllib.loads(text), version=metadata.version("pico-nb"))
