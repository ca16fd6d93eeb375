"""Where each stage keeps its outputs.

Later stages (and jump_to_* reruns) find earlier results only through Layout, so the
folder layout is defined in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pico_nb.contract.errors import ValidationError


@dataclass(frozen=True)
class Layout:
    """The output folder and the original pipeline's sub-folder names."""

    root: Path
    thresh_pmap: int

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess"

    @property
    def mc(self) -> Path:
        return self.root / "mc"

    @property
    def rmbg(self) -> Path:
        return self.root / "rmbg"

    @property
    def seg(self) -> Path:
        return self.root / f"seg_results_thresh_pmap_{self.thresh_pmap}"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def make(self) -> None:
        """Create every stage folder."""
        for folder in (self.preprocess, self.mc, self.rmbg, self.seg):
            folder.mkdir(parents=True, exist_ok=True)

    def require(self, *paths: Path, flag: str) -> None:
        """Stop with a clear message when a jump flag needs outputs that are not there."""
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise ValidationError.one(
                flag,
                f"needs {missing[0].relative_to(self.root)} from an earlier run in "
                f"{self.root}, which is missing; run without {flag} first",
            )


def read_info(folder: Path) -> dict[str, Any]:
    """A stage's info.json."""
    return json.loads((folder / "info.json").read_text("utf-8"))
