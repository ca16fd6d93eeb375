"""One pipeline parameter: its type, bounds and help, coercion of user values, its argv form.

Part of the contract: the app validates with it and the pipeline parses its flags with it,
so both sides read a value the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pico_nb.contract.limits import MAX_INT64, UNSAFE_IN_LINE

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


def param_from(data: Mapping[str, Any]) -> Param:
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
