"""README's terminal walkthrough, copy-pasted as a new user would: every command must work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    """The first bash block under "Using it from the terminal and Python"."""
    text = README.read_text("utf-8")
    section = text[text.index("## Using it from the terminal and Python") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "README lost its walkthrough"
    return match.group(1)


def test_the_terminal_walkthrough_runs_copy_pasted(tmp_path: Path) -> None:
    script = walkthrough()
    activate = "source .venv/bin/activate\n"
    assert script.startswith(activate)  # the venv's commands come first on PATH instead
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICO_NB_", "JUPYTERHUB_"))}
    env.update(HOME=str(tmp_path), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    answer = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.removeprefix(activate)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert answer.returncode == 0, answer.stdout[-3000:] + answer.stderr[-3000:]
    out = answer.stdout
    assert "exp 1 run 1 completed" in out and "exp 2 run 1 completed" in out
    assert "started exp 2 run 2" in out and "exp 2 run 2 cancelled" in out
    assert "Traceback" not in answer.stderr
    assert (tmp_path / "results" / "first" / "exports").is_dir()  # the NWB export landed
