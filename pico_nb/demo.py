"""The demo: generated movie with ground truth, a ready experiment, and scoring commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pico_nb.lab import Lab
from pico_nb.schemas import ExperimentRecord

DEMO_NAME = "Demo: synthetic 1-photon movie"
DEMO_SIZE = (256, 256)
DEMO_FRAMES = 1000


def demo_experiment(lab: Lab) -> ExperimentRecord:
    """Generate the demo movie once and return the user's demo experiment, made if missing."""
    from pico_nb.pipeline import synthetic

    movie = lab.settings.home / "demo" / "movie"
    if not (movie / "ground_truth.npz").exists():
        synthetic.generate(movie, size=DEMO_SIZE, frames=DEMO_FRAMES, seed=0)
    for exp in lab.experiments(search=DEMO_NAME, scope="mine", limit=1):
        return exp
    height, width = DEMO_SIZE
    return lab.create_experiment(
        DEMO_NAME,
        str(movie),
        str(lab.settings.home / "demo" / "results"),
        params={"crop_parameter": [0, 0, height, width], "fr": 10},
        description="Generated movie with known neurons, motion and bad frames; "
        "compare the results with ground_truth.npz via pico-nb score.",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo experiment end to end and score it against the ground truth."""
    from pico_nb.cli import _follow
    from pico_nb.pipeline import score

    lab = Lab(args.home, args.user)
    exp = demo_experiment(lab)
    print(f"demo experiment {exp.id}: {exp.input_path} -> {exp.output_path}")
    run = lab.run_experiment(exp.id)
    code = _follow(lab, run)
    if code == 0:
        report = score.score(Path(exp.output_path), Path(exp.input_path) / "ground_truth.npz")
        print(score.format_report(report))
    return code


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Write a synthetic movie with ground truth where the user asks."""
    from pico_nb.pipeline import synthetic

    out = synthetic.generate(
        Path(args.out).expanduser().resolve(),
        size=(args.size[0], args.size[1]),
        frames=args.frames,
        seed=args.seed,
        fmt=args.format,
    )
    print(f"wrote demo movie and ground_truth.npz to {out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Compare a run's neurons with ground truth."""
    from pico_nb.pipeline import score

    report = score.score(Path(args.out_path), Path(args.ground_truth))
    print(score.format_report(report))
    return 0


def add_demo_commands(sub: Any) -> None:
    """Register demo, demo-data and score on the CLI."""
    p = sub.add_parser("demo", help="run the built-in pipeline on generated data, end to end")
    p.set_defaults(handler=cmd_demo)
    p = sub.add_parser("demo-data", help="generate a synthetic movie with ground truth")
    p.set_defaults(handler=cmd_demo_data)
    p.add_argument("out")
    p.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["jpg", "tiff", "both"], default="jpg")
    p = sub.add_parser("score", help="score a run's neurons against ground truth")
    p.set_defaults(handler=cmd_score)
    p.add_argument("out_path")
    p.add_argument("ground_truth")
