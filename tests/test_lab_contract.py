"""The local Lab and the hub's RemoteLab keep one contract: the same signatures, checked here,
and the same behaviour, run here on SQLite and in tests/hub/test_api.py through a lab server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pico_nb.hub.client import RemoteLab
from pico_nb.lab import Lab
from pico_nb.settings import Settings

from lab_contract import contract_members, scenario, signature_mismatches


@pytest.mark.parametrize("implementation", [Lab, RemoteLab])
def test_each_implementation_has_the_contracts_signatures(implementation: type) -> None:
    assert len(contract_members()) > 30  # the whole surface, not an empty list
    assert signature_mismatches(implementation) == []


def test_the_local_lab_keeps_the_contract(
    settings_for: Callable[..., Settings], frames: Path, tmp_path: Path
) -> None:
    settings = settings_for("")
    alice, bob = Lab(user="alice", settings=settings), Lab(user="bob", settings=settings)
    scenario(alice, bob, frames, tmp_path / "out", tmp_path / "gate")
