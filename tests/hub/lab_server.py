"""Driving a real lab server from tests: start, stop and restart it, and talk HTTP to it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pico_nb.lab import Lab
from pico_nb.pipeline.synthetic import generate
from pico_nb.settings import load_settings

from support import free_port, source_copy

PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "carol": "carol-secret-3"}
ACCESS = ["access:services!service=pico"]
START_TIMEOUT = 90.0
FAKE_SPEC = Path(__file__).parents[1] / "fake_pipeline.toml"


@dataclass
class Response:
    """An HTTP answer with its JSON decoded when it is JSON."""

    status: int
    body: bytes
    headers: Any

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30
) -> Response:
    """One request; error statuses are answers, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return Response(r.status, r.read(), r.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return Response(exc.code, exc.read(), exc.headers)


@dataclass
class Hub:
    """A running lab server, restartable in place (same ports, same folders)."""

    root: Path
    env: dict[str, str]
    port: int
    service_port: int
    admin_token: str
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    isolated: bool = False  # members are OS accounts: each writes only into data/<name>
    python: str = sys.executable  # the installation the hub runs from

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        """The pico service's REST API, through the proxy as a browser would reach it."""
        return f"{self.url}/services/pico/api"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def frames(self) -> Path:
        """The movie every member may read."""
        return self.data / ("shared" if self.isolated else "") / "frames"

    def out(self, user: str) -> Path:
        """Where the member may write."""
        return self.data / (user if self.isolated else "out")

    def gate(self) -> Path:
        """A new file path a fake pipeline waits for, visible to every member's account."""
        folder = self.root / "gates"
        folder.mkdir(mode=0o755, exist_ok=True)
        return folder / secrets.token_hex(8)

    @property
    def log_file(self) -> Path:
        return self.root / "hub.log"

    def start(self) -> None:
        """Start `pico-nb hub` and return once the hub and the service both answer."""
        with open(self.log_file, "ab") as out:
            self.process = subprocess.Popen(
                [self.python, "-m", "pico_nb.hub.launch", "hub", "--config", self._extra()],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        for url in (f"{self.url}/hub/health", f"{self.url}/services/pico/health"):
            while not self._answers(url):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the hub did not start:\n{self.log_file.read_text()}")
                time.sleep(0.1)

    def _answers(self, url: str) -> bool:
        try:
            return http("GET", url, timeout=2).status == 200
        except OSError:
            return False

    def _extra(self) -> str:
        """A test-only service with an operator's token: make user tokens, stop servers."""
        path = self.root / "test_config.py"
        path.write_text(
            "c.JupyterHub.services.append("
            f"{{'name': 'pico-tests', 'api_token': {self.admin_token!r}}})\n"
            "c.JupyterHub.load_roles.append({'name': 'pico-tests', 'services': ['pico-tests'],"
            " 'scopes': ['admin:users', 'admin:servers', 'tokens', 'list:users']})\n"
            "c.Spawner.http_timeout = c.Spawner.start_timeout = 180  # a loaded test machine\n"
        )
        return str(path)

    def stop(self) -> None:
        """SIGTERM, as a service manager would; the hub stops proxy, service and servers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def hub_api(self, method: str, path: str, body: Any = None) -> Response:
        """The hub's REST API as the test operator."""
        return http(method, f"{self.url}/hub/api/{path}", self.admin_token, body)

    def token(self, user: str) -> str:
        """A token of the user that may call the pico service and nothing else."""
        if user not in self.tokens:
            answer = self.hub_api("POST", f"users/{user}/tokens", {"scopes": ACCESS})
            assert answer.status == 201, answer.body
            self.tokens[user] = answer.json["token"]
        return self.tokens[user]

    def call(self, user: str, method: str, path: str, body: Any = None) -> Response:
        """The pico API as a user."""
        return http(method, f"{self.api}/{path}", self.token(user), body)

    def add_member(self, name: str, password: str) -> None:
        """A member who joins now (single-account hub): an account, and the hub knows them."""
        Lab.operator(settings=load_settings(self.env["PICO_NB_HOME"])).add_user(name, password)
        assert self.hub_api("POST", "users", {"usernames": [name]}).status == 201

    def service_url(self) -> str:
        """What a user server finds in PICO_NB_SERVICE_URL."""
        return f"http://127.0.0.1:{self.service_port}/services/pico/"


def _hub_env(root: Path, values: dict[str, str]) -> dict[str, str]:
    """The environment `pico-nb hub` starts with: PICO_NB_* settings and free ports."""
    ports = {name: free_port() for name in ("port", "hub_port", "proxy_api_port", "service_port")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICO_NB_", "JUPYTERHUB_"))}
    env.update({f"PICO_NB_{k}": v for k, v in values.items()})
    env.update({f"PICO_NB_HUB_{k.upper()}": str(v) for k, v in ports.items()})
    env["PICO_NB_HUB_CULL_IDLE_SECONDS"] = "0"
    env["PICO_NB_HUB_STATE_DIR"] = str(root / "state")
    return env


def _values(root: Path, data_roots: str, pico: dict[str, str]) -> dict[str, str]:
    return {
        "HOME": str(root / "home"),
        "DATA_ROOTS": data_roots,
        "PIPELINE_SPEC": str(FAKE_SPEC),
        "HEARTBEAT_SECONDS": "0.5",
        "MAX_CONCURRENT_RUNS": "4",
        **pico,
    }


def start_hub(root: Path, **pico: str) -> Hub:
    """A single-account lab server with alice, bob and carol (admin); ``pico`` adds PICO_NB_*
    settings (``PIPELINE_SPEC=""``: the built-in pipeline instead of the fake one). Every server
    runs as the test's own account (--single-account)."""
    env = _hub_env(root, _values(root, str(root / "data"), pico))
    env["PICO_NB_HUB_SINGLE_ACCOUNT"] = "true"
    generate(root / "data" / "frames", size=(32, 32), frames=4, neurons=2)
    settings = load_settings(
        root / "home",
        **{"data_roots": [str(root / "data")], "pipeline_spec": str(FAKE_SPEC)}
        | {k.lower(): v for k, v in pico.items()},
    )
    operator = Lab.operator(settings=settings)
    for name, password in PASSWORDS.items():
        operator.add_user(name, password, is_admin=name == "carol")
    return _started(root, env)


def start_isolated_hub(root: Path, **pico: str) -> Hub:
    """The lab server as a lab sets it up as root: pico-nb installed where every account can
    run it, `pico-nb hub-setup`, `pico-nb users add` for alice, bob and carol (their OS accounts
    and own data folders), then `pico-nb hub`.

    ``root`` must be enterable by every account; members share read-only input in
    ``data/shared`` and each owns ``data/<name>``.
    """
    python, spec = shared_install()
    values = _values(root, f"{root / 'data'}/{{user}},{root / 'data' / 'shared'}", pico)
    env = _hub_env(root, {**values, "PIPELINE_SPEC": str(spec)})
    generate(root / "data" / "shared" / "frames", size=(32, 32), frames=4, neurons=2)
    pico_nb = [python, "-m", "pico_nb.cli"]
    _as_operator([*pico_nb, "hub-setup"], env)
    for name, password in PASSWORDS.items():
        admin = ["--admin"] if name == "carol" else []
        _as_operator([*pico_nb, "users", "add", name, "--password-stdin", *admin], env, password)
    return _started(root, env, isolated=True, python=python)


@cache
def shared_install() -> tuple[str, Path]:
    """Install this checkout (with the hub and distributed extras: Redis carries live logs of
    cluster runs) and the fake pipeline into a new folder, once per test session, as a lab
    installs pico-nb under /opt: a Python and a package every member's account can run.

    The test's own interpreter and checkout may sit in root's private home (pyenv, a CI clone
    in a 0700 folder), which `pico-nb hub-setup` rightly refuses. Returns the installation's
    Python and the fake pipeline's spec.
    """
    base = next(p for p in ("/usr/bin/python3", sys.executable) if _every_account_runs(p))
    folder = Path(tempfile.mkdtemp(prefix="pico-app-", dir="/tmp"))
    folder.chmod(0o755)
    venv = folder / "venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    source = source_copy(folder / "source")
    subprocess.run([*pip, f"{source}[hub,distributed]"], check=True, capture_output=True)
    shutil.rmtree(source)
    proxy = Path(sys.prefix) / "lib" / "node"
    if proxy.is_dir():  # the Node proxy scripts/install.sh put beside the test's venv
        shutil.copytree(proxy, venv / "lib" / "node", symlinks=True)
    for name in ("fake_pipeline.toml", "fake_pipeline.py", "cell_results.py"):
        shutil.copy2(FAKE_SPEC.parent / name, folder / name)
    return python, folder / "fake_pipeline.toml"


def _every_account_runs(path: str) -> bool:
    """Every folder above the interpreter's real file, and its own library, may be entered."""
    real = Path(path).resolve()
    if not real.exists():
        return False
    prefix = Path(
        subprocess.run(
            [str(real), "-c", "import sys; print(sys.base_prefix)"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    return all(os.stat(p).st_mode & 0o001 for p in [*real.parents, *prefix.parents, prefix])


def _as_operator(argv: list[str], env: dict[str, str], stdin: str = "") -> None:
    """A `pico-nb` command as the lab's administrator types it; its complaint fails the test."""
    answer = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr


def _started(
    root: Path, env: dict[str, str], isolated: bool = False, python: str = sys.executable
) -> Hub:
    """Start the hub and register the accounts with it."""
    server = Hub(
        root=root,
        env=env,
        port=int(env["PICO_NB_HUB_PORT"]),
        service_port=int(env["PICO_NB_HUB_SERVICE_PORT"]),
        admin_token=secrets.token_hex(32),
        isolated=isolated,
        python=python,
    )
    server.start()
    assert server.hub_api("POST", "users", {"usernames": list(PASSWORDS)}).status == 201
    return server
