"""A real little cluster: Celery workers as separate processes, Redis, PostgreSQL.

Each worker has a data home of its own (its spool), so nothing but the database, the broker
and the data folders is shared, as between machines. Redis is the machine's, at
127.0.0.1:6379; the tests fail, not skip, when it is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from pico_nb.lab import Lab
from pico_nb.schemas import LogLine
from pico_nb.settings import Settings, load_settings

from support import TEST_PIPELINE, free_port, write_frames

REDIS_URL = os.environ.get("PICO_NB_TEST_REDIS", "redis://127.0.0.1:6379/11")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a condition the database holds (no event exists across machines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LiveFollow:
    """A run's log followed in a thread from before its first line, as a viewer would."""

    def __init__(self, lab: Lab, run_id: int, cue: str = "waiting") -> None:
        self.events: list[LogLine] = []
        self.cued = threading.Event()  # the run printed ``cue``: it is live now
        self._thread = threading.Thread(target=self._follow, args=(lab, run_id, cue))
        self._thread.start()

    def _follow(self, lab: Lab, run_id: int, cue: str) -> None:
        for event in lab.follow_log(run_id):
            self.events.append(event)
            if event.line == cue:
                self.cued.set()

    def lines(self, timeout: float) -> list[str]:
        """The lines seen, once the follow has ended with the run."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the follow did not end with the run"
        return [e.line for e in self.events if e.line is not None]


class Cluster:
    """Workers and Labs sharing one database and one broker."""

    def __init__(self, root: Path, database_url: str, broker_url: str) -> None:
        self.root, self.database_url, self.broker_url = root, database_url, broker_url
        self.data = root / "data"
        self.frames = write_frames(self.data / "cluster-frames")
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.values: dict[str, Any] = {
            "database_url": database_url,
            "executor": "celery",
            "broker_url": broker_url,
            "data_roots": [str(self.data)],
            "pipeline_spec": str(TEST_PIPELINE.with_suffix(".toml")),
            "heartbeat_seconds": 0.3,
            "lost_after_seconds": 3,
            "stop_grace_seconds": 1,
        }

    def settings(self, home: Path) -> Settings:
        """The lab's settings as seen from one machine's data home."""
        return load_settings(home, **self.values)

    def env(self, home: Path) -> dict[str, str]:
        """The PICO_NB_* environment a machine of this cluster runs pico-nb with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICO_NB_")}
        for key, value in self.values.items():
            env[f"PICO_NB_{key.upper()}"] = (
                ",".join(value) if isinstance(value, list) else str(value)
            )
        env["PICO_NB_HOME"] = str(home)
        return env

    def lab(self, user: str) -> Lab:
        """A Lab on the submitting machine, which has its own home too."""
        return Lab(user=user, settings=self.settings(self.root / "submitter"))

    def start_worker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """`pico-nb worker` in its own session, as on a machine of its own; wait until online."""
        env = self.env(self.root / f"worker-{name}")
        log = open(self.root / f"worker-{name}.log", "ab")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "pico_nb.cli", "worker", "--name", name, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.workers[name] = proc
        lab = self.lab("operator")
        wait_for(
            lambda: (
                any(w.name == name and w.state == "online" for w in lab.workers())
                or proc.poll() is not None
            ),
            60,
            f"worker {name} to come online",
        )
        assert proc.poll() is None, (self.root / f"worker-{name}.log").read_text()
        return proc

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole session: the machine went off."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_workers(self) -> None:
        """Warm shutdown, as an operator's SIGTERM does; SIGKILL whatever lingers."""
        for proc in self.workers.values():
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.workers.clear()

    def experiment(self, lab: Lab, name: str, **params: Any) -> int:
        """An experiment on the shared frames with an output folder of its own."""
        out = self.data / "out" / f"{lab.username}-{name}-{time.monotonic_ns()}"
        return lab.create_experiment(name, str(self.frames), str(out), params=params).id


def flushed_redis(url: str) -> redis.Redis:
    """The broker database the cluster uses, emptied; fail loudly if Redis is not running."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis must run at {url} for the distributed tests: {exc}")
    client.flushdb()
    return client


class Broker:
    """A Redis server of this test's own, so it can be stopped and started again."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), 10, "the broker to accept connections")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _pings(client: redis.Redis) -> bool:
    """Whether Redis answers yet."""
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
