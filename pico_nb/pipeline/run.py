"""The command-line entry point: check everything cheap first, then run the stages.

Only light modules are imported before the input is checked, so a bad flag or a
missing frame is reported within a fraction of a second.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pico_nb.contract.errors import PicoError, ValidationError
from pico_nb.contract.sources import discover
from pico_nb.pipeline.flags import Flags
from pico_nb.pipeline.invocation import Invocation
from pico_nb.pipeline.layout import Layout
from pico_nb.pipeline.load import check_crop
from pico_nb.pipeline.stage_order import Stage


def _first_stage(run: Invocation) -> Stage:
    """The first stage to run, checking that a jump has the outputs it reuses."""
    flags, layout = run.flags, run.layout
    need_rmbg = [
        layout.preprocess / "info.json",
        layout.preprocess / "movie.npy",
        layout.mc / "info.json",
        layout.mc / "shifts.csv",
        layout.mc / "reference.npy",
    ]
    need_seg = [layout.rmbg / "info.json", layout.rmbg / "binned.npy"]
    need_vis = [
        layout.seg / name
        for name in ("masks.npy", "traces.npy", "dff.npy", "neuropil.npy", "correlation_image.npy")
    ]
    if flags.jump_to_vis:
        layout.require(*need_rmbg, *need_seg, *need_vis, flag="jump_to_vis")
        return Stage.OUTPUTS
    if flags.jump_to_seg:
        layout.require(*need_rmbg, *need_seg, flag="jump_to_seg")
        return Stage.VESSELS
    if flags.jump_to_rmbg:
        layout.require(*need_rmbg, flag="jump_to_rmbg")
        return Stage.BACKGROUND
    return Stage.LOADING


def command_line(data_path: Path | str, out_path: Path | str, *flags: str) -> list[str]:
    """The command that runs this pipeline as its own process, as pico_nb launches it."""
    return [
        sys.executable,
        "-m",
        "pico_nb.pipeline",
        "--data_path",
        str(data_path),
        "--out_path",
        str(out_path),
        *flags,
    ]


def prepare(argv: Sequence[str]) -> Invocation:
    """Parse and check everything that can be checked before any heavy work."""
    data_path, out_path, flags = Flags.parse(list(argv))
    run = Invocation(Path(data_path), Layout(Path(out_path), flags.thresh_pmap), flags)
    if run.layout.root.exists() and not run.layout.root.is_dir():
        raise ValidationError.one("out_path", f"{out_path} exists and is not a folder")
    if _first_stage(run) is Stage.LOADING:
        run.source = discover(run.data_path)
        check_crop(run.source, flags.crop_parameter)
    return run


def execute(run: Invocation) -> None:
    """Run the stages from the first needed one, then write summary.json."""
    import cv2

    from pico_nb.pipeline.stages import WORK
    from pico_nb.pipeline.stages.summary import write_summary

    started = time.perf_counter()
    cv2.setNumThreads(2)
    run.layout.make()
    run.layout.summary.unlink(missing_ok=True)
    todo = _first_stage(run).and_after()
    for k, stage in enumerate(todo, start=1):
        run.stage(stage, WORK[stage], (k, len(todo)))
    write_summary(run, started)
    print(f"done in {time.perf_counter() - started:.1f}s: {run.layout.summary}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; bad input exits with 2 and one readable line."""
    try:
        run = prepare(sys.argv[1:] if argv is None else argv)
        execute(run)
    except ValidationError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 2
    except PicoError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
