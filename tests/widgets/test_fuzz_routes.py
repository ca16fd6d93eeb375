"""The standalone dashboard's own route refuses hostile run ids with a 4xx sentence (issue 12)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # starts the dashboard server


def _get(url: str) -> tuple[int, str]:
    """Status and text of one GET; error statuses are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_log_route_refuses_ids_out_of_range(served: Any) -> None:
    base, token = served.url.split("?")
    cases = {
        "99999999999999999999999999999999": 400,
        "9223372036854775808": 400,
        "0": 400,
        "9223372036854775807": 404,  # in range, but no such run
    }
    for run_id, expected in cases.items():
        status, text = _get(f"{base}pico-nb/runs/{run_id}/log?{token}")
        assert status == expected, (run_id, status, text[:200])
        assert "Traceback" not in text and "<" not in text, text[:200]
        assert ("run_id" in text) == (expected == 400), text
