"""A real lab server for the hub tests: JupyterHub, its proxy and the pico service on free ports.

One hub per session (starting one takes seconds on a small machine). Accounts alice, bob and
carol (admin) exist from the start; a test-only hub service holds an admin token so tests can
make user tokens and stop servers the way an operator would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lab_server import Hub, start_hub


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The lab server on the embedded default (SQLite, local executor)."""
    server = start_hub(tmp_path_factory.mktemp("hub"))
    yield server
    server.stop()


@pytest.fixture
def experiment(hub: Hub) -> Any:
    """A factory of experiments through the API, each with its own output folder."""
    counter = iter(range(10_000))

    def make(user: str = "alice", **params: Any) -> dict[str, Any]:
        n = f"{user}-{time.monotonic_ns()}-{next(counter)}"
        body = {
            "name": f"exp {n}",
            "input_path": str(hub.frames),
            "output_path": str(hub.out(user) / n),
            "params": params,
        }
        answer = hub.call(user, "POST", "experiments", body)
        assert answer.status == 200, answer.body
        return answer.json

    return make
