"""The pipeline's parameter spec: one definition drives validation, argv, forms and JSON Schema."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from pico_nb.errors import ValidationError
from pico_nb.inputs import MAX_INT64, UNSAFE_IN_LINE

KINDS = ("bool", "int", "float", "str", "choice", "int_list")
# What a parameter means for the input movie, so Lab can check it against the detected frames:
# "crop" = y, x, height, width inside the frame (0 height/width = to the frame's edge, where the
# spec's minimum allows 0); "count" = frames to read, at most the movie's (0 = all).
FRAME_ROLES = ("crop", "count")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_INT_RE = re.compile(r"^[+-]?[0-9]{1,20}$")


@dataclass(frozen=True)
class Param:
    """One pipeline flag with everything a form, a validator and argv need to know."""

    name: str
    kind: str
    default: Any
    group: str
    help: str
    minimum: float | tuple[float, ...] | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    length: int = 0
    labels: tuple[str, ...] = ()
    argv_style: str = "comma"
    pattern: str | None = None
    pattern_help: str | None = None
    unit: str = ""
    frame: str | None = None

    def element_minimum(self, index: int) -> float | None:
        """Per-element lower bound, so the crop's y/x may be 0 while height/width may not."""
        if isinstance(self.minimum, tuple):
            return self.minimum[index]
        return self.minimum

    def int_minimum(self, index: int) -> float:
        """Whole numbers have a floor even where the spec sets none: int64 fits every store."""
        low = self.element_minimum(index)
        return -MAX_INT64 if low is None else low

    @property
    def int_maximum(self) -> float:
        """The spec's maximum, or int64's: 10**4000 must be refused, not stored and run."""
        return MAX_INT64 if self.maximum is None else self.maximum

    def coerce(self, value: Any) -> Any:
        """Return the typed value or raise ValueError with the rule, for one field."""
        if self.kind == "bool":
            return _to_bool(value)
        if self.kind == "int":
            return self._bounded(_to_int(value), self.int_minimum(0), self.int_maximum)
        if self.kind == "float":
            return self._bounded(_to_float(value), self.element_minimum(0), self.maximum)
        if self.kind == "choice":
            text = str(value).lower() if isinstance(value, bool) else value
            if text not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            return text
        if self.kind == "str":
            return self._text(value)
        return self._int_list(value)

    def _bounded(self, number: float, low: float | None, high: float | None) -> Any:
        """Check bounds with a message that states them."""
        if low is not None:
            if self.exclusive_minimum and number <= low:
                raise ValueError(f"must be greater than {_fmt(low)}")
            if not self.exclusive_minimum and number < low:
                raise ValueError(f"must be at least {_fmt(low)}")
        if high is not None and number > high:
            raise ValueError(f"must be at most {_fmt(high)}")
        return number

    def _text(self, value: Any) -> str:
        """Strings are single-line and, where the spec says so, match a pattern."""
        if not isinstance(value, str):
            raise ValueError("must be text")
        if len(value) > 1000:
            raise ValueError("must be one line of at most 1000 characters")
        if UNSAFE_IN_LINE.search(value):
            raise ValueError("must be one line without control characters or bidi overrides")
        if value.startswith("-"):
            raise ValueError("must not start with '-' (the pipeline would read it as a flag)")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValueError(f"must be {self.pattern_help or 'of the form ' + self.pattern}")
        return value

    def _int_list(self, value: Any) -> list[int]:
        """Accept a list, a tuple or text such as '100,100' / '100 100' from forms and CLIs."""
        items: Sequence[Any]
        if isinstance(value, str):
            items = [p for p in re.split(r"[,\s]+", value.strip()) if p]
        elif isinstance(value, list | tuple):
            items = value
        else:
            raise ValueError(f"must be {self.length} whole numbers ({', '.join(self.labels)})")
        if len(items) != self.length:
            raise ValueError(f"must be {self.length} whole numbers ({', '.join(self.labels)})")
        out = []
        for i, item in enumerate(items):
            label = self.labels[i] if self.labels else str(i)
            try:
                number = _to_int(item)
                self._bounded(number, self.int_minimum(i), self.int_maximum)
            except ValueError as exc:
                raise ValueError(f"{label} {exc}") from None
            out.append(number)
        return out

    def to_tokens(self, value: Any) -> list[str]:
        """The argv form the original script expects for this flag."""
        flag = f"--{self.name}"
        if self.kind == "bool":
            return [flag, "true" if value else "false"]
        if self.kind == "int_list":
            parts = [str(v) for v in value]
            return [flag, *parts] if self.argv_style == "tokens" else [flag, ",".join(parts)]
        if self.kind == "float":
            return [flag, repr(float(value))]
        return [flag, str(value)]

    def json_schema(self) -> dict[str, Any]:
        """This parameter as a JSON Schema property, for forms and the REST API."""
        schema: dict[str, Any] = {
            "title": self.name,
            "description": self.help,
            "default": self.default,
            "x-group": self.group,
        }
        if self.unit:
            schema["x-unit"] = self.unit
        if self.kind == "bool":
            schema["type"] = "boolean"
        elif self.kind in ("int", "float"):
            schema["type"] = "integer" if self.kind == "int" else "number"
            schema.update(_schema_bounds(self.minimum, self.maximum, self.exclusive_minimum))
        elif self.kind == "choice":
            schema.update(type="string", enum=list(self.choices))
        elif self.kind == "str":
            schema["type"] = "string"
            if self.pattern:
                schema["pattern"] = self.pattern
        else:
            schema.update(type="array", minItems=self.length, maxItems=self.length)
            schema["x-labels"] = list(self.labels)
            if isinstance(self.minimum, tuple):
                schema["prefixItems"] = [
                    {"type": "integer", **_schema_bounds(m, self.maximum, False)}
                    for m in self.minimum
                ]
                schema["items"] = False
            else:
                schema["items"] = {
                    "type": "integer",
                    **_schema_bounds(self.minimum, self.maximum, False),
                }
        return schema


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


def _to_bool(value: Any) -> bool:
    """Booleans, or the words a form or CLI gives for them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("must be true or false")


def _to_int(value: Any) -> int:
    """Whole numbers; text only when exact, so '10' passes and '10.5' does not."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    raise ValueError("must be a whole number")


def _to_float(value: Any) -> float:
    """Finite numbers, from numbers or numeric text."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    except OverflowError:  # a whole number beyond any float, e.g. 10**400
        raise ValueError("must be a finite number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return number


def _fmt(number: float) -> str:
    """Bounds print as 1, not 1.0."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _schema_bounds(low: Any, high: Any, exclusive: bool) -> dict[str, Any]:
    """JSON Schema bound keywords for one number."""
    out: dict[str, Any] = {}
    if low is not None:
        out["exclusiveMinimum" if exclusive else "minimum"] = low
    if high is not None:
        out["maximum"] = high
    return out


def _param_from(data: Mapping[str, Any]) -> Param:
    """Build one Param from its TOML/JSON table, rejecting malformed definitions early."""
    kind = data.get("type")
    if kind not in KINDS:
        raise ValueError(f"parameter {data.get('name')!r}: type must be one of {', '.join(KINDS)}")
    minimum = data.get("minimum")
    param = Param(
        name=data["name"],
        kind=kind,
        default=data["default"],
        group=data.get("group", "Parameters"),
        help=data.get("help", ""),
        minimum=tuple(minimum) if isinstance(minimum, list) else minimum,
        maximum=data.get("maximum"),
        exclusive_minimum=bool(data.get("exclusive_minimum", False)),
        choices=tuple(data.get("choices", ())),
        length=int(data.get("length", 0)),
        labels=tuple(data.get("labels", ())),
        argv_style=data.get("argv", "comma"),
        pattern=data.get("pattern"),
        pattern_help=data.get("pattern_help"),
        unit=str(data.get("unit", "")),
        frame=data.get("frame"),
    )
    _check_frame_role(param)
    try:
        param.coerce(param.default)
    except ValueError as exc:
        raise ValueError(f"parameter {param.name!r}: default {exc}") from None
    return param


def _check_frame_role(param: Param) -> None:
    """A parameter checked against the input must have the shape that check reads."""
    if param.frame is None:
        return
    if param.frame not in FRAME_ROLES:
        raise ValueError(f"parameter {param.name!r}: frame must be one of {', '.join(FRAME_ROLES)}")
    if param.frame == "crop" and not (param.kind == "int_list" and param.length == 4):
        raise ValueError(f"parameter {param.name!r}: a crop must be 4 whole numbers (y, x, h, w)")
    if param.frame == "count" and param.kind != "int":
        raise ValueError(f"parameter {param.name!r}: a frame count must be a whole number")


def spec_from_dict(data: Mapping[str, Any], version: str = "") -> PipelineSpec:
    """Build a spec from parsed TOML/JSON data."""
    params = tuple(_param_from(p) for p in data.get("params", ()))
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
