"""The lab server under load, through its proxy the way browsers reach it (loopback only).

Starts a real `pico-nb hub` (JupyterHub, the Node proxy, the pico service; SQLite, local runs)
in a temporary folder with five members, then for each follower count (default 100, 200):
starts 20 runs of the test pipeline that print a timestamped line every 50 ms (600 lines), opens
the followers on `/services/pico/api/runs/ID/log/follow` spread over the runs and members, and
while they stream, probes login (`GET /hub/login`), `whoami` and starting a run from a process of
its own (as a browser would; the followers' event loop would add its own delays). It prints the
per-line latency (printed -> parsed by the follower) p50/p95/max, lines missed, errors by status,
CPU and RSS of the service and the proxy, probe latencies, and run-start latency. Last, 50 API
clients call `GET /experiments` for a fixed time, through the proxy and straight to the service
(with the service's CPU time per request, the figure a loaded machine disturbs least): first as
fast as they are answered (the most the server does: with 50 clients waiting on each other,
latency is 50 / throughput by construction), then together at a fixed rate (`--api-rate`,
default the goal's 300 req/s), which gives the latency a lab sees at that load.
Everything is bounded in count and time and stops by itself.

Goals (issue 19): with 200 followers, line p95 < 500 ms, 0 missed, 0 errors, login and API
p95 < 200 ms meanwhile, run start < 500 ms; `GET /experiments` >= 300 req/s at p95 < 200 ms.

    .venv/bin/python benchmarks/hub_load.py [--followers 100,200] [--lines 600] [--api-seconds 15]
        [--service-processes 1] [--api-rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "hub")]
from pico_nb.lab import Lab  # noqa: E402
from pico_nb.settings import load_settings  # noqa: E402

from lab_server import Hub, start_hub  # noqa: E402

RUNS = 20
TICK_SECONDS = 0.05
MEMBERS = ("alice", "bob", "carol", "dave", "erin")
EXTRA = {"dave": "dave-secret-44", "erin": "erin-secret-55"}
PHASE_TIMEOUT = 300.0


def pct(values: list[float], q: float) -> float:
    """The q-th percentile in milliseconds (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summary(values: list[float]) -> str:
    """Percentiles as one printed phrase."""
    return (
        f"p50 {pct(values, 50):.0f} ms, p95 {pct(values, 95):.0f} ms, max {pct(values, 100):.0f} ms"
    )


def listeners(port: int) -> list[psutil.Process]:
    """The processes accepting connections on a local port (several service processes share)."""
    found = {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    }
    if not found:
        raise RuntimeError(f"nothing listens on {port}")
    return [psutil.Process(pid) for pid in sorted(found)]


class Usage:
    """CPU share (of one core) and RSS of some processes, summed, between start and report."""

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.cpu = self._cpu()
        self.at = time.monotonic()
        self.rss_max = self._rss()

    def _cpu(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self.processes)

    def _rss(self) -> int:
        return sum(p.memory_info().rss for p in self.processes)

    def sample(self) -> None:
        self.rss_max = max(self.rss_max, self._rss())

    def cpu_used(self) -> float:
        """CPU seconds used since the start: on a shared machine, unlike req/s, it does not
        count the time other work held the cores."""
        return self._cpu() - self.cpu

    def report(self) -> str:
        cpu = self.cpu_used() / (time.monotonic() - self.at)
        return (
            f"{len(self.processes)} process(es), CPU {100 * cpu:.0f} % of a core, "
            f"RSS max {self.rss_max / 2**20:.0f} MiB"
        )


class Stream:
    """One follower's server-sent events, parsed as they arrive."""

    def __init__(self) -> None:
        self.buf = b""
        self.ticks: set[int] = set()
        self.latencies: list[float] = []
        self.connected = asyncio.Event()
        self.ended = False
        self.resumed = 0

    def feed(self, chunk: bytes) -> None:
        """Parse whole events from what arrived; time each tick line against its print time."""
        now = time.time()
        self.buf += chunk
        while b"\n\n" in self.buf:
            block, self.buf = self.buf.split(b"\n\n", 1)
            for raw in block.split(b"\n"):
                if raw.startswith(b"event: end"):
                    self.ended = True
                elif raw.startswith(b"event: resume"):
                    self.resumed += 1
                elif raw.startswith(b"data: {"):
                    line = json.loads(raw[6:]).get("line") or ""
                    if line == "waiting":
                        self.connected.set()
                    elif line.startswith("tick "):
                        _, n, printed = line.split()
                        self.ticks.add(int(n))
                        self.latencies.append(now - float(printed))


@dataclass(frozen=True)
class Api:
    """The lab server as its members' clients see it; plain data, so a probing process of its
    own can be handed it."""

    hub_url: str
    api: str
    service_api: str
    tokens: dict[str, str]

    def request(self, user: str, method: str, path: str, straight: bool = False, **kw: Any) -> Any:
        """A pico API request as a member, through the proxy unless ``straight``."""
        base = self.service_api if straight else self.api
        headers = {"Authorization": f"token {self.tokens[user]}"}
        return HTTPRequest(base + path, method=method, headers=headers, connect_timeout=60, **kw)

    async def call(self, user: str, method: str, path: str, body: Any = None) -> Any:
        """One API call that must succeed; its JSON answer."""
        data = None if body is None else json.dumps(body)
        if method == "POST" and data is None:
            data = ""
        answer = await AsyncHTTPClient().fetch(
            self.request(user, method, path, body=data, request_timeout=120), raise_error=False
        )
        if answer.code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.code} {answer.body[:200]!r}")
        return json.loads(answer.body) if answer.body else None

    async def start_run(self, experiment: int) -> float:
        """Seconds to start the probe run (its answer), after the previous one ended."""
        started = time.monotonic()
        run = await self.call("alice", "POST", f"experiments/{experiment}/run")
        took = time.monotonic() - started
        while (await self.call("alice", "GET", f"runs/{run['id']}"))["status"] in (
            "queued",
            "running",
        ):
            await asyncio.sleep(0.1)
        return took

    async def probes(self, experiment: int, stop: Connection) -> dict[str, list[float]]:
        """Login page, whoami and a run start, one after another until told to stop."""
        times: dict[str, list[float]] = {"login": [], "whoami": [], "run start": []}
        n = 0
        while not stop.poll():
            started = time.monotonic()
            page = await AsyncHTTPClient().fetch(f"{self.hub_url}/hub/login", raise_error=False)
            times["login"].append(time.monotonic() - started)
            assert page.code == 200, page.code
            started = time.monotonic()
            await self.call("bob", "GET", "whoami")
            times["whoami"].append(time.monotonic() - started)
            if n % 5 == 0:
                times["run start"].append(await self.start_run(experiment))
            n += 1
            await asyncio.sleep(0.2)
        return times


def probe_process(api: Api, experiment: int, pipe: Connection) -> None:
    """The probes from a process of their own, as a member's browser is: timed on the
    followers' event loop they would also count that loop's own delays."""
    pipe.send(asyncio.run(api.probes(experiment, pipe)))


class Bench:
    def __init__(self, hub: Hub, args: argparse.Namespace) -> None:
        self.hub, self.args = hub, args
        self.client = AsyncHTTPClient()
        tokens = {m: hub.token(m) for m in MEMBERS}
        self.server = Api(hub.url, f"{hub.api}/", hub.service_url() + "api/", tokens)
        self.experiments: dict[str, list[int]] = {m: [] for m in MEMBERS}
        self.probe_experiment = 0

    async def setup(self, gates: Path) -> None:
        """Four experiments per member, each printing its ticks once its gate file exists."""
        for i in range(RUNS):
            member = MEMBERS[i % len(MEMBERS)]
            body = {
                "name": f"load {i}",
                "input_path": str(self.hub.data / "frames"),
                "output_path": str(self.hub.data / "out" / f"load{i}"),
                "params": {
                    "lines": 0,
                    "wait_file": str(gates / f"gate{i}"),
                    "ticks": self.args.lines,
                    "tick_seconds": TICK_SECONDS,
                },
            }
            self.experiments[member].append(
                (await self.server.call(member, "POST", "experiments", body))["id"]
            )
        probe = {
            "name": "probe",
            "input_path": str(self.hub.data / "frames"),
            "output_path": str(self.hub.data / "out" / "probe"),
            "params": {"lines": 1},
        }
        made = await self.server.call("alice", "POST", "experiments", probe)
        self.probe_experiment = made["id"]

    async def follow(self, user: str, run_id: int, stream: Stream, errors: Counter[str]) -> None:
        """One follower until its run ends; a refusal or a cut stream is counted as an error."""
        request = self.server.request(
            user,
            "GET",
            f"runs/{run_id}/log/follow",
            streaming_callback=stream.feed,
            request_timeout=PHASE_TIMEOUT,
        )
        answer = await self.client.fetch(request, raise_error=False)
        if answer.code != 200:
            errors[str(answer.code)] += 1
            stream.connected.set()
        elif not stream.ended:
            errors["stream cut" if not stream.resumed else "resume"] += 1

    async def phase(self, followers: int, gates: Path) -> None:
        """Start the runs, attach the followers, release the runs and measure until all end."""
        print(f"\n== {followers} followers on {RUNS} runs x {self.args.lines} lines ==", flush=True)
        for gate in gates.glob("gate*"):
            gate.unlink()
        runs: list[tuple[str, int]] = []
        for member, experiments in self.experiments.items():
            for eid in experiments:
                run = await self.server.call(member, "POST", f"experiments/{eid}/run")
                runs.append((member, run["id"]))
        streams = [Stream() for _ in range(followers)]
        errors: Counter[str] = Counter()
        tasks = [
            asyncio.ensure_future(self.follow(*runs[i % len(runs)], streams[i], errors))
            for i in range(followers)
        ]
        await asyncio.wait_for(
            asyncio.gather(*(s.connected.wait() for s in streams)), PHASE_TIMEOUT
        )
        service = Usage(listeners(self.hub.service_port))
        proxy = Usage(listeners(self.hub.port))
        mine, theirs = multiprocessing.Pipe()
        prober = multiprocessing.get_context("spawn").Process(
            target=probe_process, args=(self.server, self.probe_experiment, theirs)
        )
        prober.start()
        for i in range(RUNS):
            (gates / f"gate{i}").write_text("go")
        finished = asyncio.gather(*tasks)
        while not finished.done():
            service.sample()
            proxy.sample()
            await asyncio.wait([finished], timeout=1.0)
        mine.send("stop")
        probes = await asyncio.get_running_loop().run_in_executor(None, mine.recv)
        prober.join()
        latencies = [x for s in streams for x in s.latencies]
        missed = followers * self.args.lines - sum(len(s.ticks) for s in streams)
        print(f"lines: {len(latencies)} received, {missed} missed; latency {summary(latencies)}")
        print(f"errors by status: {dict(errors) or 'none'}")
        print(f"service: {service.report()}")
        print(f"proxy:   {proxy.report()}")
        for name, values in probes.items():
            print(f"{name} under load ({len(values)}): {summary(values)}")

    async def api(self, straight: bool, rate: float = 0.0) -> None:
        """50 clients calling GET /experiments for a fixed time: as fast as they get answers
        (``rate`` 0: the most the lab server can do), or together at ``rate`` requests a second,
        each on its own schedule, a latency counted from the scheduled send so that a late
        answer's wait counts (no coordinated omission)."""
        clients = self.args.api_clients
        deadline = time.monotonic() + self.args.api_seconds
        times: list[float] = []
        errors: Counter[int] = Counter()

        async def client(i: int) -> None:
            user = MEMBERS[i % len(MEMBERS)]
            period = clients / rate if rate else 0.0
            due = time.monotonic() + period * i / clients
            while due < deadline:
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                started = due if rate else time.monotonic()
                request = self.server.request(
                    user, "GET", "experiments?limit=50", straight, request_timeout=60
                )
                answer = await self.client.fetch(request, raise_error=False)
                times.append(time.monotonic() - started)
                if answer.code != 200:
                    errors[answer.code] += 1
                due = due + period if rate else time.monotonic()

        started = time.monotonic()
        usage = {
            "service": Usage(listeners(self.hub.service_port)),
            "proxy": Usage(listeners(self.hub.port)),
            "clients": Usage([psutil.Process()]),  # the load itself shares the two cores
        }
        await asyncio.gather(*(client(i) for i in range(clients)))
        achieved = len(times) / (time.monotonic() - started)
        where = "straight to the service" if straight else "through the proxy"
        pace = f"paced at {rate:.0f} req/s" if rate else "as fast as answered"
        cpu = ", ".join(
            f"{name} {1000 * u.cpu_used() / max(len(times), 1):.1f}" for name, u in usage.items()
        )
        print(
            f"GET /experiments, {clients} clients {pace}, {where}: {achieved:.0f} req/s, "
            f"{summary(times)}, errors {dict(errors) or 'none'}; CPU ms per request: {cpu}"
        )


async def main(args: argparse.Namespace) -> None:
    """Start the hub, run the phases, print the figures, stop the hub."""
    AsyncHTTPClient.configure(None, max_clients=1000)
    root = Path(tempfile.mkdtemp(prefix="pico-hub-load-"))
    started = time.monotonic()
    hub = start_hub(
        root,
        MAX_CONCURRENT_RUNS=str(RUNS + 2),
        MAX_STREAMS_PER_USER="100",
        SERVICE_PROCESSES=str(args.service_processes),
        HEARTBEAT_SECONDS="2",
    )
    try:
        operator = Lab.operator(settings=load_settings(root / "home"))
        for name, password in EXTRA.items():
            operator.add_user(name, password)
        assert hub.hub_api("POST", "users", {"usernames": list(EXTRA)}).status == 201
        print(f"hub up in {time.monotonic() - started:.1f} s; load average {os.getloadavg()}")
        bench = Bench(hub, args)
        gates = root / "gates"
        gates.mkdir()
        await bench.setup(gates)
        idle = [await bench.server.start_run(bench.probe_experiment) for _ in range(5)]
        print("idle run start: " + summary(idle))
        for followers in args.followers:
            await bench.phase(followers, gates)
            print(f"load average {os.getloadavg()}", flush=True)
        print(f"\n== API with {RUNS * len(args.followers)} runs recorded ==")
        for rate in (0.0, args.api_rate):
            await bench.api(straight=False, rate=rate)
            await bench.api(straight=True, rate=rate)
        print(f"load average {os.getloadavg()}")
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)  # runs' logs and outputs: never left behind


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--followers", default="100,200", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--lines", type=int, default=600)
    parser.add_argument("--api-clients", type=int, default=50)
    parser.add_argument("--api-seconds", type=float, default=15.0)
    parser.add_argument("--api-rate", type=float, default=300.0, help="the paced phase's req/s")
    parser.add_argument("--service-processes", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
