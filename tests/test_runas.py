"""The run-as-owner path's own refusals: unknown accounts, root, names that make no account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pico_nb.contract.errors import ValidationError
from pico_nb.execution.runas import pipeline_command
from pico_nb.os_accounts import check_member_name


def plan(tmp_path: Path, account: str | None) -> dict[str, object]:
    """A launch plan as bookkeeping.launch_plan makes it."""
    out = str(tmp_path / "out")
    return {"argv": ["true"], "output_path": out, "gpus": None, "account": account}


def test_a_run_whose_owner_has_no_account_here_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="the account pico-nosuchmember does not exist"):
        pipeline_command(plan(tmp_path, "pico-nosuchmember"), os.environ)
    assert not (tmp_path / "out").exists()


def test_a_members_run_goes_through_sudo_with_only_allowed_variables(tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin:/bin", "JUPYTERHUB_API_TOKEN": "t", "LC_ALL": "C.UTF-8"}
    argv, env, cwd = pipeline_command(plan(tmp_path, "root"), environ)
    assert argv[1:5] == ["-n", "-u", "root", "--"] and argv[5].endswith("pico-nb-runas")
    assert "--env=LC_ALL=C.UTF-8" in argv and not any("JUPYTERHUB" in a for a in argv)
    assert env == {"PATH": "/usr/bin:/bin"} and cwd == "/"
    assert argv[-2:] == ["--", "true"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is of root")
def test_the_helper_refuses_to_run_a_pipeline_as_root(tmp_path: Path) -> None:
    helper = [sys.executable, "-m", "pico_nb.execution.runas", f"--cwd={tmp_path}", "--", "true"]
    answer = subprocess.run(helper, capture_output=True, text=True, check=False)
    assert answer.returncode == 2
    assert "refusing to run a pipeline as root" in answer.stderr


def test_user_names_that_make_no_os_account_are_refused_with_the_field() -> None:
    assert check_member_name("alice_2") == "pico-alice_2"
    for bad in ("Alice", "al ice", "a/b", "a" * 28):
        with pytest.raises(ValidationError) as info:
            check_member_name(bad)
        assert "name" in info.value.errors
