"""The pico-nb command line, run as a real program, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pico_nb.cli.main import main

from support import TEST_PIPELINE

Cli = Callable[..., "Result"]


@pytest.fixture
def cli_env(home: Path, tmp_path: Path, backend: str) -> dict[str, str]:
    """The environment a user of the CLI would have."""
    return {
        "PICO_NB_HOME": str(home),
        "PICO_NB_DATA_ROOTS": str(tmp_path),
        "PICO_NB_PIPELINE_SPEC": str(TEST_PIPELINE.with_suffix(".toml")),
        "PICO_NB_DATABASE_URL": backend,
        "PICO_NB_HEARTBEAT_SECONDS": "0.5",
        "JUPYTERHUB_USER": "alice",
    }


@pytest.fixture
def cli(cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Call pico-nb's main() in this process, as the console script does."""
    for key, value in cli_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: str | None = None, code: int | None = 0) -> Result:
        out, err = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                returned = main(list(args))
            except SystemExit as exc:  # argparse's own usage errors
                returned = int(exc.code or 0)
        result = Result(returned, out.getvalue(), err.getvalue())
        if code is not None:
            assert result.returncode == code, result
        return result

    return run


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.mark.slow
def test_round_trip(cli: Cli, frames: Path, tmp_path: Path) -> None:
    made = cli(
        "create",
        "first",
        "--input",
        "input",
        "--output",
        "out/first",
        "--set",
        "lines=4",
        "--description",
        "<b>bold</b>",
        "--json",
    )
    exp = json.loads(made.stdout)
    assert exp["params"]["lines"] == 4 and exp["input_path"] == str(frames)
    assert exp["description"] == "<b>bold</b>"
    listed = json.loads(cli("list", "--json").stdout)
    assert [e["id"] for e in listed] == [exp["id"]]
    assert "first" in cli("list").stdout
    cli("edit", str(exp["id"]), "--name", "renamed", "--set", "stderr_lines=2")
    shown = json.loads(cli("show", str(exp["id"]), "--json").stdout)
    assert shown["name"] == "renamed" and shown["params"]["stderr_lines"] == 2
    assert shown["runs"] == []
    cloned = json.loads(cli("clone", str(exp["id"]), "--name", "twin", "--json").stdout)
    assert cloned["parent_id"] == exp["id"]

    ran = cli("run", str(exp["id"]), "--follow")
    assert "line 3" in ran.stdout and "err 1" in ran.stdout
    assert ran.stdout.strip().endswith(f"exp {exp['id']} run 1 completed: exit code 0")
    logs = cli("logs", str(exp["id"]))
    assert logs.stdout.startswith("# experiment") and "line 0" in logs.stdout
    human = cli("show", str(exp["id"])).stdout
    assert "completed" in human and "lines = 4" in human

    cli("edit", str(exp["id"]), "--set", "exit_code=3")
    failed = cli("run", str(exp["id"]), "--follow", code=1)
    assert f"exp {exp['id']} run 2 failed: exit code 3" in failed.stdout
    runs = json.loads(cli("show", str(exp["id"]), "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["completed", "failed"]
    assert "line 0" in cli("logs", str(exp["id"]), "--run", "1").stdout

    cli("delete", str(exp["id"]))
    assert [e["name"] for e in json.loads(cli("list", "--json").stdout)] == ["twin"]


@pytest.mark.slow
def test_stop_from_the_cli(cli: Cli, cli_env: dict[str, str], frames: Path, tmp_path: Path) -> None:
    gate = tmp_path / "never"
    exp = json.loads(
        cli(
            "create",
            "s",
            "--input",
            str(frames),
            "--output",
            "out/s",
            "--set",
            f"wait_file={gate}",
            "--json",
        ).stdout
    )
    run = json.loads(cli("run", str(exp["id"]), "--json").stdout)
    assert run["status"] == "running"
    follower = subprocess.Popen(
        [sys.executable, "-m", "pico_nb.cli", "logs", str(exp["id"]), "--follow"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **cli_env},
    )
    assert follower.stdout is not None
    for line in follower.stdout:
        if line.strip() == "waiting":
            break
    stopped = cli("stop", str(exp["id"]))
    assert "cancelled: stopped by alice" in stopped.stdout
    rest = follower.stdout.read()
    assert follower.wait(30) == 1
    assert f"exp {exp['id']} run 1 cancelled: stopped by alice" in rest
    finished = cli("stop", str(exp["id"]), code=1)
    assert f"experiment {exp['id']} run 1 has already finished (cancelled)" in finished.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "", "--input", "input", "--output", "out/x"], "name: must not be empty"),
        (["create", "x", "--input", "nope", "--output", "out/x"], "input_path:"),
        (["create", "x", "--input", "input", "--output", "/etc/x"], "output_path: must be inside"),
        (["create", "x", "--input", "input", "--output", "o", "--set", "lines=-1"], "params.lines"),
        (["create", "x", "--input", "input", "--output", "o", "--set", "bogus"], "--set"),
        (["show", "99"], "experiment 99 does not exist"),
        (["logs", "99"], "experiment 99 does not exist"),
    ],
)
def test_bad_input_is_one_line(cli: Cli, frames: Path, args: list[str], message: str) -> None:
    proc = cli(*args, code=None)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert json.loads(cli("list", "--json").stdout) == []


def test_params_and_schema(cli: Cli) -> None:
    schema = json.loads(cli("params", "--json").stdout)
    assert schema["properties"]["lines"]["default"] == 3
    assert "Lines printed to stdout." in cli("params").stdout


def test_workers_without_celery_shows_this_host(cli: Cli) -> None:
    head, row = cli("workers").stdout.splitlines()
    assert head.split() == [
        "MACHINE",
        "KIND",
        "STATE",
        "CPUS",
        "MEMORY",
        "GPUS",
        "RUNNING",
        "YOURS",
    ]
    assert row.split()[:3] == [socket.gethostname(), "host", "online"]
    listed = json.loads(cli("workers", "--json").stdout)
    assert [m["kind"] for m in listed["machines"]] == ["host"] and listed["jobs"] == []
    assert listed["machines"][0]["cpus"] == os.cpu_count()


def test_users(cli: Cli) -> None:
    cli("users", "add", "carol", "--admin", "--password-stdin", stdin="a long password\n")
    weak = cli("users", "add", "dave", "--password-stdin", stdin="short\n", code=2)
    assert "password: must be at least 10 characters" in weak.stderr
    listed = json.loads(cli("users", "list", "--json").stdout)
    accounts = {u["username"]: (u["is_admin"], u["has_password"]) for u in listed}
    assert accounts == {"carol": (True, True), "alice": (False, False)}
    assert "a long password" not in json.dumps(listed)
    cli("users", "admin", "carol", "--revoke")
    cli("users", "passwd", "carol", "--password-stdin", stdin="another long one\n")
    cli("users", "delete", "carol")
    cli("users", "delete", "carol", code=1)


def test_demo_data_and_score_are_the_pipeline_tools(cli: Cli, tmp_path: Path) -> None:
    made = cli("demo-data", str(tmp_path / "movie"), "--size", "48", "40", "--frames", "12")
    assert "ground_truth.npz" in made.stdout
    assert (tmp_path / "movie" / "ground_truth.npz").exists()
    assert len(list((tmp_path / "movie").glob("frame_*.jpg"))) == 12
    bad = cli(
        "score", str(tmp_path / "nothing"), str(tmp_path / "movie" / "ground_truth.npz"), code=2
    )
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_results_compare_and_export_any_run(cli: Cli, frames: Path, tmp_path: Path) -> None:
    made = cli("create", "c", "--input", "input", "--output", "out/c", "--set", "cells=6", "--json")
    eid = str(json.loads(made.stdout)["id"])
    cli("run", eid, "--follow")
    cli("edit", eid, "--set", "cells=4")
    cli("run", eid, "--follow")
    runs = json.loads(cli("show", eid, "--json").stdout)["runs"]
    first = cli("results", eid, "--run", "1").stdout
    assert "neurons found: 6" in first and str(tmp_path / "out/c/run-0001") in first
    assert json.loads(cli("results", eid, "--json").stdout)["summary"]["neurons"] == 4
    assert "RUN ID" in cli("show", eid).stdout
    a, b = str(runs[0]["id"]), str(runs[1]["id"])
    compared = cli("compare", a, b).stdout
    assert f"4 matched, 2 only in {a}, 0 only in {b}" in compared and "cells:" in compared
    where = cli("export", a, "--format", "csv", "--to", "exported").stdout.strip()
    assert where == str(tmp_path / "exported") and (tmp_path / "exported" / "dff.csv").exists()
    bad = cli("export", a, "--format", "csv", "--to", "/etc/x", code=2)
    assert bad.stderr.startswith("error: destination")


HOSTILE = [
    (("list", "--offset", "100000000000000000000"), "offset"),
    (("list", "--limit", "-1"), "limit"),
    (("list", "--status", "foo"), "--status"),
    (("list", "--search", "evil\u202etxt.exe"), "search"),
    (("show", "99999999999999999999999"), "experiment_id"),
    (("run", "0"), "experiment_id"),
    (("logs", "9223372036854775808"), "experiment_id"),
    (("create", "x", "--input", "input", "--output", "o", "--set", "wait_file=--out_path"),
     "params.wait_file"),
    (("create", "x", "--input", "input", "--output", "o", "--set", "lines=1e300"), "params.lines"),
    (("create", "x", "--input", "input", "--output", "o", "--set", "lines=" + "9" * 5000),
     "params.lines"),
    (("create", "bad\u202ename", "--input", "input", "--output", "o"), "name"),
    (("create", "x", "--input", "input", "--output", "/etc/o"), "output_path"),
]  # fmt: skip


@pytest.mark.parametrize("backend", [""], ids=["sqlite"])  # the checks precede any database
@pytest.mark.parametrize(("args", "field"), HOSTILE, ids=[" ".join(a)[:40] for a, _ in HOSTILE])
def test_hostile_arguments_get_one_line_errors(
    cli: Cli, frames: Path, args: tuple[str, ...], field: str
) -> None:
    """Issue 12: numbers past 2^63, unknown words, flag-like and spoofing text are refused
    with the field named and exit status 2, never a traceback, and nothing is stored."""
    result = cli(*args, code=2)
    assert field in result.stderr, result
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert cli("list", "--json").stdout.strip() == "[]"
