"""Isolation between members on a real lab server, tried from where an attacker sits.

The hub runs as root with each member's server as their own OS account (``pico-<name>``), the
pico service as the ``pico`` account, and runs executed as their owner through the sudo helper.
The attacks come from inside bob's own notebook kernel (code sent over the kernel's websocket,
as his browser would) and from bob's runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from test_api import test_follow_is_live, test_isolation
from test_survival import (
    test_run_survives_a_hub_restart,
    test_run_survives_stopping_the_users_server,
)
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from pico_nb.execution.runas import ALLOWED_ENV
from pico_nb.hub.client import RemoteLab
from pico_nb.os_accounts import SERVICE_ACCOUNT, is_root

from lab_server import Hub, http, start_isolated_hub

__all__ = [  # the same scenarios, with every member an OS account of their own
    "test_follow_is_live",
    "test_isolation",
    "test_run_survives_a_hub_restart",
    "test_run_survives_stopping_the_users_server",
]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not is_root(), reason="creates OS accounts and a sudo rule: needs root"),
]
DENIED = ("JUPYTERHUB", "PICO_NB", "JPY_", "DATABASE", "BROKER", "TOKEN", "SECRET", "PASSWORD")
IDENTITY = {"HOME", "USER", "LOGNAME"}


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """An isolated lab server in a folder every account may enter (pytest's tmp is root's)."""
    root = Path(tempfile.mkdtemp(prefix="pico-isolation-", dir="/tmp"))
    root.chmod(0o711)
    (root / "gates").mkdir(mode=0o755)
    server = start_isolated_hub(root, STOP_GRACE_SECONDS="1", MAX_RUNS_PER_USER="1")
    yield server
    server.stop()


def wait_for(condition: Any, timeout: float = 90.0) -> Any:
    """Poll something only observable from outside until it holds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return value


def server_pid(hub: Hub, user: str) -> int:
    """Start the member's JupyterLab (if needed) and return the pid of its process."""
    answer = hub.hub_api("POST", f"users/{user}/server")
    assert answer.status in (201, 202, 400), answer.body
    wait_for(lambda: hub.hub_api("GET", f"users/{user}").json["servers"].get("", {}).get("ready"))
    api = f"127.0.0.1:{hub.env['PICO_NB_HUB_HUB_PORT']}/"

    def find() -> int | None:
        for proc in psutil.process_iter(["cmdline", "environ"]):
            env = proc.info["environ"] or {}
            if env.get("JUPYTERHUB_USER") == user and api in env.get("JUPYTERHUB_API_URL", ""):
                return proc.pid
        return None

    return int(wait_for(find))


async def _execute(ws_url: str, token: str, code: str) -> str:
    """Send one execute_request over the kernel's channels socket; collect what it prints."""
    request = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    socket = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": msg_id}
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
    await socket.write_message(json.dumps({**message, "channel": "shell"}))
    out: list[str] = []
    while True:
        raw = await asyncio.wait_for(socket.read_message(), 120)
        assert raw is not None, "the kernel closed the socket"
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = reply["msg_type"]
        if kind == "stream":
            out.append(reply["content"]["text"])
        elif kind == "error":
            out.append("\n".join(reply["content"]["traceback"]))
        elif kind == "execute_reply":
            socket.close()
            return "".join(out)


def in_kernel(hub: Hub, user: str, code: str) -> str:
    """Run code in a fresh kernel of the member's own server, as their browser would."""
    server_pid(hub, user)
    scopes = {"scopes": [f"access:servers!user={user}"]}
    token = hub.hub_api("POST", f"users/{user}/tokens", scopes).json["token"]
    base = f"{hub.url}/user/{user}/api/kernels"
    kernel = http("POST", base, token, {"name": "python3"}).json["id"]
    try:
        ws = base.replace("http://", "ws://") + f"/{kernel}/channels"
        # A loop of its own on a thread of its own: a session's Playwright keeps one running here.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _execute(ws, token, code)).result()
    finally:
        http("DELETE", f"{base}/{kernel}", token)


def mode(path: Path) -> tuple[str, int]:
    """Owner and permission bits, as `ls -l` shows them."""
    st = path.stat()
    return pwd.getpwuid(st.st_uid).pw_name, stat.S_IMODE(st.st_mode)


def bobs_experiment(hub: Hub, name: str, **params: Any) -> tuple[RemoteLab, Any]:
    """An experiment of bob's on the shared movie, writing into his own folder."""
    lab = RemoteLab(url=hub.service_url(), token=hub.token("bob"))
    out = hub.data / "bob" / f"{name}-{time.monotonic_ns()}"
    exp = lab.create_experiment(name, str(hub.data / "shared" / "frames"), str(out), params=params)
    return lab, exp


def test_bobs_kernel_cannot_read_the_lab_or_alice(hub: Hub) -> None:
    alice_pid = server_pid(hub, "alice")
    alice_lab = RemoteLab(url=hub.service_url(), token=hub.token("alice"))
    exp = alice_lab.create_experiment(
        "alice's", str(hub.data / "shared" / "frames"), str(hub.data / "alice" / "secret")
    )
    run = alice_lab.wait(alice_lab.run_experiment(exp.id).id, timeout=90)
    assert run.status == "completed", run.reason
    targets = {
        "database": hub.root / "home" / "pico-nb.sqlite",
        "cookie secret": hub.root / "state" / "jupyterhub_cookie_secret",
        "alice's log": Path(run.log_path),
        "alice's home": Path(pwd.getpwnam("pico-alice").pw_dir) / "dashboard.ipynb",
        "alice's results": hub.data / "alice" / "secret",
        "alice's server environment": Path(f"/proc/{alice_pid}/environ"),
    }
    assert all(path.exists() for path in targets.values())  # root sees them: they are there
    code = textwrap.dedent(f"""
        import json, os, subprocess
        results = {{}}
        for what, path in {json.dumps({k: str(v) for k, v in targets.items()})}.items():
            try:
                if os.path.isdir(path):
                    os.listdir(path)
                else:
                    open(path, "rb").read(1)
                results[what] = "READ"
            except PermissionError:
                results[what] = "denied"
        results["id"] = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout
        print(json.dumps(results))
    """)
    seen = json.loads(in_kernel(hub, "bob", code).strip().splitlines()[-1])
    assert seen.pop("id").strip() == "pico-bob"
    assert seen == dict.fromkeys(targets, "denied")


def test_modes_of_the_data_home_database_logs_and_folders(hub: Hub) -> None:
    lab, exp = bobs_experiment(hub, "modes")
    run = lab.wait(lab.run_experiment(exp.id).id, timeout=90)
    assert run.status == "completed", run.reason
    home = hub.root / "home"
    assert mode(home) == (SERVICE_ACCOUNT, 0o700)
    assert mode(home / "pico-nb.sqlite") == (SERVICE_ACCOUNT, 0o600)
    assert mode(home / "logs") == (SERVICE_ACCOUNT, 0o700)
    assert mode(home / "logs" / "bob") == (SERVICE_ACCOUNT, 0o700)
    assert mode(Path(run.log_path)) == (SERVICE_ACCOUNT, 0o600)
    assert mode(hub.root / "state") == ("root", 0o700)
    assert mode(Path(pwd.getpwnam("pico-bob").pw_dir)) == ("pico-bob", 0o700)
    assert mode(hub.data / "bob") == ("pico-bob", 0o2750)
    done = next(Path(exp.output_path).rglob("done.txt"))
    assert mode(done) == ("pico-bob", 0o640)  # written by bob's own account


def test_runs_execute_as_the_owner_with_only_allowed_variables(hub: Hub) -> None:
    gate = hub.root / "gates" / uuid.uuid4().hex
    lab, exp = bobs_experiment(hub, "env", wait_file=str(gate))
    run = lab.run_experiment(exp.id)
    wait_for(lambda: "waiting" in lab.read_log(run.id).text)
    pipeline = next(
        p
        for p in psutil.process_iter(["cmdline", "username", "environ"])
        if str(exp.output_path) in (line := " ".join(p.info["cmdline"] or []))
        and "fake_pipeline.py" in line
        and "pico-nb-runas" not in line  # sudo and the helper name it too
    )
    env = pipeline.info["environ"]
    gate.write_text("go")
    assert pipeline.info["username"] == "pico-bob"
    assert set(env) <= ALLOWED_ENV | IDENTITY | {k for k in env if k.startswith("LC_")}
    assert not [k for k in env if k.startswith(DENIED)]
    assert env["HOME"] == pwd.getpwnam("pico-bob").pw_dir
    assert lab.wait(run.id, timeout=90).status == "completed"


def test_a_symlink_swapped_to_alices_folder_is_stopped_by_the_os(hub: Hub) -> None:
    target = hub.data / "alice" / "kept"
    subprocess.run(["install", "-d", "-o", "pico-alice", "-m", "700", str(target)], check=True)
    gate = hub.root / "gates" / uuid.uuid4().hex
    lab, blocker = bobs_experiment(hub, "blocker", wait_file=str(gate))
    first = lab.run_experiment(blocker.id)  # bob's one slot: the next run waits in the queue
    _, exp = bobs_experiment(hub, "swap")
    run = lab.run_experiment(exp.id)  # checked by the application now ...
    assert lab.get_run(run.id).status == "queued"
    os.symlink(target, exp.output_path)  # ... and swapped before it starts
    gate.write_text("go")
    assert lab.wait(first.id, timeout=90).status == "completed"
    run = lab.wait(run.id, timeout=90)
    assert run.status == "failed", run.reason
    assert "Permission denied" in lab.read_log(run.id).text
    assert list(target.iterdir()) == []


def test_stop_escalates_to_sigkill_across_the_account_boundary(hub: Hub) -> None:
    lab, exp = bobs_experiment(hub, "stubborn", ignore_term=True, wait_file="/nonexistent")
    run = lab.run_experiment(exp.id)
    wait_for(lambda: "waiting" in lab.read_log(run.id).text)
    lab.stop_run(run.id)
    final = lab.wait(run.id, timeout=90)
    assert final.status == "cancelled"
    assert "killed with SIGKILL after 1 s grace" in final.reason
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(exp.output_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_without_root_the_hub_refuses_with_the_setup_command(hub: Hub) -> None:
    command = [hub.python, "-m", "pico_nb.cli", "hub", "--port", "1"]
    answer = subprocess.run(
        command, env=hub.env, capture_output=True, text=True, user="pico-bob", cwd="/", check=False
    )
    assert answer.returncode == 1
    assert answer.stderr.count("\n") == 1, answer.stderr
    assert "must start as root" in answer.stderr and "pico-nb hub-setup" in answer.stderr
    assert "--single-account" in answer.stderr
