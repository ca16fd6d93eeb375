"""Limits that hold on every door and in the pipeline: int64 numbers, one-line text.

The spec's coercion and the app's input checks read them here, so a value the app accepts
is one the pipeline accepts too.
"""

from __future__ import annotations

import re

MAX_INT64 = 2**63 - 1
"""Ids, offsets and integer parameters fit a signed 64-bit column on every database."""

# C0 and C1 controls, DEL, and the invisible marks that reorder or hide text (bidi overrides,
# isolates and marks, zero-width joiners, the BOM): shown as text they still spoof a reader.
_SPOOF = "\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff"
UNSAFE_IN_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_SPOOF}]")
UNSAFE_IN_TEXT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_SPOOF}]")
