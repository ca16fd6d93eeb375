"""Hostile values for the fuzz suites: what a malicious member sends through every door."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from pico_nb.contract.limits import MAX_INT64

UNSAFE_CHARS = ["\x00", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\u200f", "\ufeff"]
"""NUL, ESC, DEL, a C1 control, a bidi override, an isolate, a mark and a BOM."""

_WHOLE_TEXT = re.compile(r"\s*[+-]?[0-9]{1,20}\s*")


def _not_a_valid_id(value: Any) -> bool:
    """True unless the value would be read as an id in 1 … 2^63-1."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return not 1 <= value <= MAX_INT64
    if isinstance(value, float):
        return not (value.is_integer() and 1 <= value <= MAX_INT64)
    if isinstance(value, str):
        return not (_WHOLE_TEXT.fullmatch(value) and 1 <= int(value.strip()) <= MAX_INT64)
    return True


bad_ids = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=MAX_INT64 + 1),
    st.sampled_from([10**30, 2**63, -(2**63), 1e20, 1e300, 0.5]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e20", "9" * 5000, "abc", "", " ", "1.0", "0x10", "١٢", "²"]),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
).filter(_not_a_valid_id)
"""Anything that is not an id: huge, negative, fractional, text, bool, None, a list."""

bad_counts = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=MAX_INT64 + 1),
    st.sampled_from([1e20, -1.5, float("inf"), float("nan"), "1e20", "lots", True, None]),
)
"""Offsets that are not whole numbers in 0 … 2^63-1."""

huge_numbers = st.one_of(
    st.integers(min_value=MAX_INT64 + 1),
    st.integers(max_value=-MAX_INT64 - 1),
    st.sampled_from([10**4999, 10**3999, 1e300, -1e300, "9" * 5000, "1e400"]),
)
"""Numbers no 64-bit column, and no recording, holds."""


@st.composite
def spoofed_text(draw: st.DrawFn, keep_newlines: bool = False) -> str:
    """Ordinary text with a control, DEL or bidirectional character somewhere inside."""
    chars = [c for c in UNSAFE_CHARS if not (keep_newlines and c in "\n\t\r")]
    head = draw(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), max_size=8))
    tail = draw(st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), max_size=8))
    return f"x{head}{draw(st.sampled_from(chars))}{tail}"


flag_like = st.sampled_from(["--out_path", "--data_path=/etc", "-rf", "-", "--help"])
"""Free text the pipeline's argument parser would read as a flag."""

unknown_words = st.text(max_size=20).filter(
    lambda s: (
        s not in {"visible", "mine", "shared", "all", "created", "updated", "name", "id"}
        and s not in {"queued", "running", "completed", "failed", "cancelled", ""}
    )
)
"""Words outside every listing vocabulary."""


def deep_json(depth: int) -> bytes:
    """A JSON body nested `depth` levels deep, built without recursion."""
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
