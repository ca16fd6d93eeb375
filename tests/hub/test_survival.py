"""Runs outlive their user's server and a restart of the hub and the pico service."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from pico_nb.hub.client import RemoteLab

from lab_server import Hub


def server_state(hub: Hub, user: str) -> dict[str, Any]:
    """The user's default server as the hub reports it ({} when stopped)."""
    return hub.hub_api("GET", f"users/{user}").json.get("servers", {}).get("", {})


def pico_environment(hub: Hub, user: str) -> dict[str, str]:
    """The PICO_NB_* variables a user's server process sees: no database, no settings."""
    api = f"127.0.0.1:{hub.env['PICO_NB_HUB_HUB_PORT']}/"  # this hub's servers, not another's
    for proc in psutil.process_iter(["cmdline", "environ"]):
        env = proc.info["environ"] or {}
        if (
            "jupyterhub.singleuser" in (proc.info["cmdline"] or [])
            and env.get("JUPYTERHUB_USER") == user
            and api in env.get("JUPYTERHUB_API_URL", "")
        ):
            return {k: v for k, v in env.items() if k.startswith("PICO_NB_")}
    raise AssertionError(f"no server process for {user}")


def wait_for(condition: Any, timeout: float = 60.0) -> None:
    """Poll a condition the hub exposes only through its API."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_run_survives_stopping_the_users_server(hub: Hub, experiment: Any) -> None:
    started = hub.hub_api("POST", "users/alice/server")  # she may still have one from a login
    assert started.status in (201, 202) or b"already running" in started.body, started.body
    wait_for(lambda: server_state(hub, "alice").get("ready"))
    assert pico_environment(hub, "alice") == {"PICO_NB_SERVICE_URL": hub.service_url()}
    gate = hub.gate()
    exp = experiment("alice", wait_file=str(gate), lines=50)
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    run = lab.run_experiment(exp["id"])
    wait_for(lambda: "waiting" in lab.read_log(run.id).text)
    assert hub.hub_api("DELETE", "users/alice/server").status in (202, 204)
    wait_for(lambda: not server_state(hub, "alice"))
    assert lab.get_run(run.id).status == "running"
    gate.write_text("go")
    final = lab.wait(run.id, timeout=60)
    assert final.status == "completed", final.reason
    text = lab.read_log(run.id).text
    assert all(f"line {i}\n" in text for i in range(50)) and "finished" in text


def test_run_survives_a_hub_restart(hub: Hub, experiment: Any) -> None:
    gate = hub.gate()
    exp = experiment("alice", wait_file=str(gate))
    lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    run = lab.run_experiment(exp["id"])
    wait_for(lambda: "waiting" in lab.read_log(run.id).text)
    seen: list[str] = []
    follower = threading.Thread(
        target=lambda: seen.extend(e.line for e in lab.follow_log(run.id) if e.line)
    )
    follower.start()
    before = lab.get_experiment(exp["id"])
    hub.restart()
    after = lab.get_experiment(exp["id"])
    assert after.model_dump(exclude={"last_run"}) == before.model_dump(exclude={"last_run"})
    assert after.last_run is not None and after.last_run.status == "running"
    gate.write_text("go")
    final = lab.wait(run.id, timeout=60)
    assert final.status == "completed" and final.exit_code == 0, final.reason
    follower.join(timeout=60)
    assert not follower.is_alive()
    assert seen.count("waiting") == 1 and "finished" in seen  # resumed, nothing repeated
    assert "finished" in lab.read_log(run.id).text
