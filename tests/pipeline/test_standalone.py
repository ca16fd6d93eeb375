"""The built-in pipeline is a separate program: what a fresh interpreter loads to run it."""

from __future__ import annotations

import json
import subprocess
import sys

# Imports pico_nb.pipeline.run as `python -m pico_nb.pipeline` does, then every other pipeline
# module, and reports what was loaded after each step.
_PROBE = """
import json, pkgutil, sys
import pico_nb.pipeline.run
loaded = {"run": sorted(sys.modules)}
import pico_nb.pipeline
for info in pkgutil.walk_packages(pico_nb.pipeline.__path__, "pico_nb.pipeline."):
    if not info.name.endswith("__main__"):
        __import__(info.name)
loaded["all"] = sorted(sys.modules)
print(json.dumps(loaded))
"""


def _app_modules(modules: list[str]) -> list[str]:
    """pico_nb modules other than the pipeline and the contract it is allowed to import."""
    allowed = ("pico_nb.pipeline", "pico_nb.contract")
    return [
        m
        for m in modules
        if m.startswith("pico_nb.") and not any(m == a or m.startswith(a + ".") for a in allowed)
    ]


def test_the_pipeline_loads_no_app_module_nor_pydantic_nor_sqlalchemy() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    for step in ("run", "all"):
        modules = loaded[step]
        assert "pico_nb.pipeline.run" in modules
        assert _app_modules(modules) == [], step
        heavy = [m for m in modules if m.split(".")[0] in ("pydantic", "sqlalchemy", "alembic")]
        assert heavy == [], step
    assert "pico_nb.contract.spec" in loaded["run"]
