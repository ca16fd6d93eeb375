"""A wheel install finds its dashboard notebooks and Jupyter config without the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import CHECKOUT, source_copy

ROOT = CHECKOUT
PIP = (sys.executable, "-m", "pip")

pytestmark = pytest.mark.slow


def test_wheel_carries_and_finds_the_notebooks_and_config(tmp_path: Path) -> None:
    source = source_copy(tmp_path / "source")
    build = subprocess.run(
        [*PIP, "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("pico_nb-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    assert "share/pico-nb/notebooks/dashboard.ipynb" in data
    assert "share/pico-nb/jupyter_config/voila.json" in data
    assert "etc/jupyter/jupyter_server_config.d/pico_nb.json" in data
    prefix = tmp_path / "prefix"
    install = subprocess.run(
        # --ignore-installed: never uninstall this environment's own (editable) pico-nb
        [*PIP, "install", "--no-deps", "--ignore-installed", "-q", "--prefix", prefix, wheel],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    (site,) = prefix.glob("lib/python*/site-packages")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import pico_nb.shared_files as f;"
            "print(f.__file__, f.shared_dir('notebooks'), f.shared_dir('jupyter_config'))",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    module, notebooks, config = map(Path, probe.stdout.split())
    assert module.is_relative_to(site)  # the installed copy, not the checkout
    assert notebooks == prefix / "share" / "pico-nb" / "notebooks"
    assert (notebooks / "dashboard.ipynb").is_file() and (config / "voila.json").is_file()
    here = subprocess.run(
        [sys.executable, "-c", "import pico_nb; print(pico_nb.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert Path(here.stdout.strip()).is_relative_to(ROOT)  # the test environment is untouched
