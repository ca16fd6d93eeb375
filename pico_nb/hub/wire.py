"""What crosses the wire: request bodies parsed within bounds, request values bound to a Lab
call's parameters with their JSON types checked, and results and errors as JSON."""

from __future__ import annotations

import functools
import inspect
import json
import operator
import re
from collections.abc import Callable, Mapping
from itertools import accumulate, islice
from typing import Any

import pydantic_core

from pico_nb.contract.errors import PicoError, ValidationError
from pico_nb.contract.limits import MAX_INT64
from pico_nb.inputs import whole

MAX_BODY_BYTES = 1 << 20
"""A JSON body larger than this is refused (413) before it is parsed."""
MAX_BODY_DEPTH = 32
"""Nesting deeper than this is refused before parsing: no recursion error, no 500."""


def _coerce(param: inspect.Parameter, value: Any, text: bool) -> Any:
    """JSON types must match the Lab signature (Lab would read "false" as true): booleans and
    whole numbers may also come as query text; mappings must be objects."""
    kind = str(param.annotation)
    if kind == "bool" and not isinstance(value, bool):
        if text and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise ValidationError.one(param.name, "must be true or false")
    if kind == "int":
        if isinstance(value, str) and not text:  # JSON bodies carry numbers as numbers
            raise ValidationError.one(param.name, "must be a whole number")
        return whole(value, param.name, minimum=-MAX_INT64)
    if kind.startswith("Mapping") and not isinstance(value, dict | None):
        raise ValidationError.one(param.name, "must be an object of name to value")
    return value


def bind(
    fn: Callable[..., Any], given: Mapping[str, Any], fixed: Mapping[str, str], text: bool
) -> Any:
    """Call fn with request fields named after its parameters; unknown or missing ones are 400."""
    params = _parameters(fn)
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params.values())
    errors = {
        k: "unknown field" for k in given if k in fixed or (k not in named and not open_ended)
    }
    for name, param in named.items():
        if param.default is param.empty and name not in given and name not in fixed:
            errors[name] = "is required"
    if errors:
        raise ValidationError(errors)
    values = {k: _coerce(named[k], v, text) if k in named else v for k, v in given.items()}
    return fn(**fixed, **values)


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    """fn's parameters; a bound method's come from its function's signature, read once, since
    inspecting it again on every request was a measurable share of a listing's time."""
    func = getattr(fn, "__func__", None)
    if func is None:
        return inspect.signature(fn).parameters
    params = _signature(func).parameters
    return dict(islice(params.items(), 1, None))  # without the bound self


@functools.cache
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    """A function's signature; Lab's and the spec's methods are few and never change."""
    return inspect.signature(func)


def count(value: Any, field: str) -> int:
    """Offsets and line counts from a query string: whole numbers, zero … 2^63-1."""
    return whole(value, field)


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON numbers; Python's parser would let them in."""
    raise ValidationError.one("body", f"{name} is not a JSON number")


def parse_body(body: bytes) -> dict[str, Any]:
    """A JSON object of bounded size and depth, checked before the parser sees it."""
    if len(body) > MAX_BODY_BYTES:
        raise BodyTooLarge(f"the request body is larger than {MAX_BODY_BYTES >> 10} KiB")
    if nesting_depth(body) > MAX_BODY_DEPTH:
        raise ValidationError.one("body", f"must not nest deeper than {MAX_BODY_DEPTH} levels")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except ValueError:  # also bad UTF-8 and numbers longer than Python converts
        raise ValidationError.one("body", "must be JSON") from None
    if not isinstance(data, dict):
        raise ValidationError.one("body", "must be a JSON object")
    return data


def nesting_depth(body: bytes) -> int:
    """Deepest bracket nesting outside JSON strings, in linear time at C speed: strings (even
    an unterminated one) are cut out, brackets become 2 (open) or 0 (close), and the running
    sum minus the count so far is the depth at each bracket."""
    steps = _STRING.sub(b"", body).translate(_BRACKET_STEPS, _NOT_BRACKET)
    return max(map(operator.sub, accumulate(steps), range(1, len(steps) + 1)), default=0)


_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class BodyTooLarge(PicoError):
    """A request body over the size limit."""

    status = 413


def to_json(value: Any) -> bytes:
    """A Lab call's answer as JSON in one pass of pydantic's serialiser: records take their
    JSON form, so the client rebuilds the very same types (non-finite floats become null)."""
    return pydantic_core.to_json(value)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error a client turns back into the same exception; faults say nothing more."""
    if not isinstance(exc, PicoError):
        return {"error": "internal", "message": "internal error"}
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        body["errors"] = exc.errors
    return body


def error_answer(
    exc: BaseException | None, status: int, reason: str, fault_id: str | None
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body for any exception: refusals say why, faults give only an id."""
    if isinstance(exc, PicoError):
        return exc.status, error_body(exc)
    if status < 500:
        return status, {"error": "http", "message": reason}
    return 500, {"error": "internal", "message": "internal error", "request_id": fault_id}
