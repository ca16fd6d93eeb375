"""A real lab server for the hub tests: JupyterHub, its proxy and the pico service on free ports.

One hub per session (starting one takes seconds on a small machine). Accounts alice, bob and
carol (admin) exist from the start; a test-only hub service holds an admin token so tests can
make user tokens and stop servers the way an operator would.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pico_nb.lab import Lab
from pico_nb.pipeline.synthetic import generate
from pico_nb.settings import load_settings

from lab_server import PASSWORDS, Hub, free_port

FAKE_SPEC = Path(__file__).parents[1] / "fake_pipeline.toml"


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The lab server with alice, bob and carol; stopped cleanly at the end."""
    root = tmp_path_factory.mktemp("hub")
    ports = {name: free_port() for name in ("port", "hub_port", "proxy_api_port", "service_port")}
    pico = {
        "HOME": str(root / "home"),
        "DATA_ROOTS": str(root / "data"),
        "PIPELINE_SPEC": str(FAKE_SPEC),
        "HEARTBEAT_SECONDS": "0.5",
        "MAX_CONCURRENT_RUNS": "4",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICO_NB_", "JUPYTERHUB_"))}
    env.update({f"PICO_NB_{k}": v for k, v in pico.items()})
    env.update({f"PICO_NB_HUB_{k.upper()}": str(v) for k, v in ports.items()})
    env["PICO_NB_HUB_CULL_IDLE_SECONDS"] = "0"
    env["PICO_NB_HUB_STATE_DIR"] = str(root / "state")
    generate(root / "data" / "frames", size=(32, 32), frames=4, neurons=2)
    settings = load_settings(
        root / "home",
        data_roots=[str(root / "data")],
        pipeline_spec=str(FAKE_SPEC),
    )
    operator = Lab.operator(settings=settings)
    for name, password in PASSWORDS.items():
        operator.add_user(name, password, is_admin=name == "carol")
    server = Hub(
        root=root,
        env=env,
        port=ports["port"],
        service_port=ports["service_port"],
        admin_token=secrets.token_hex(32),
    )
    server.start()
    assert server.hub_api("POST", "users", {"usernames": list(PASSWORDS)}).status == 201
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
            "input_path": str(hub.data / "frames"),
            "output_path": str(hub.data / "out" / n),
            "params": params,
        }
        answer = hub.call(user, "POST", "experiments", body)
        assert answer.status == 200, answer.body
        return answer.json

    return make
