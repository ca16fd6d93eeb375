"""Closed vocabularies and numeric bounds that every door (Lab, REST, CLI, widgets) shares.

One place says which words a listing accepts and how large a number may be, so an unknown
scope can never mean "no filter" and a huge id can never reach the database as an overflow.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pico_nb.contract.errors import ValidationError
from pico_nb.contract.limits import MAX_INT64, UNSAFE_IN_LINE

Scope = Literal["visible", "mine", "shared", "all"]
Status = Literal["created", "queued", "running", "completed", "failed", "cancelled"]
Sort = Literal["created", "updated", "name", "id"]

MAX_LIST_PAGE = 1000
"""A listing returns at most this many rows, however many were asked for."""
MAX_LOG_READ = 4 << 20
"""A log read returns at most this many bytes, however large the limit asked."""
MAX_SEARCH = 200
"""Search text and owner names are as long as a name may be."""

_WHOLE = re.compile(r"[+-]?[0-9]{1,20}")


def one_of(value: Any, field: str, vocabulary: Any) -> Any:
    """A value from a closed set (a Literal type); anything else is refused, never ignored."""
    allowed = get_args(vocabulary)
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError.one(field, f"must be one of {', '.join(allowed)}")
    return value


def whole(value: Any, field: str, minimum: int = 0, maximum: int = MAX_INT64) -> int:
    """Whole numbers from JSON, forms or URLs, within bounds; fractions, bools and text such
    as '1e20' are refused with the field's name instead of overflowing somewhere deeper."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _WHOLE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise ValidationError.one(field, "must be a whole number")
    if number < minimum:
        raise ValidationError.one(field, f"must be at least {minimum}")
    if number > maximum:
        raise ValidationError.one(field, f"must be at most {maximum}")
    return number


def as_id(value: Any, field: str) -> int:
    """Record ids: 1 … 2^63-1, whatever door they came through."""
    return whole(value, field, minimum=1)


def short_text(value: Any, field: str, limit: int = MAX_SEARCH) -> str | None:
    """Optional one-line filters (search, owner): bounded and free of spoofing characters."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationError.one(field, "must be text")
    if len(value) > limit:
        raise ValidationError.one(field, f"must be at most {limit} characters")
    if UNSAFE_IN_LINE.search(value):
        raise ValidationError.one(field, "must not contain control or bidirectional characters")
    return value
