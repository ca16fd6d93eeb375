"""The demo: generated movie with ground truth, a ready experiment, and scoring commands."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pico_nb.lab import Lab
from pico_nb.schemas import ExperimentRecord

if TYPE_CHECKING:
    from pico_nb.lab_api import LabAPI

DEMO_NAME = "Demo: synthetic two-photon movie"
DEMO_SEARCH = "Demo: synthetic"  # also finds demos made under the earlier "1-photon" name
DEMO_SIZE = (256, 256)
DEMO_FRAMES = 1000


def demo_experiment(lab: LabAPI) -> ExperimentRecord:
    """Generate the demo movie once and return the user's demo experiment, made if missing."""
    from pico_nb.pipeline import synthetic

    movie = lab.settings.home / "demo" / "movie"
    if not (movie / "ground_truth.npz").exists():
        synthetic.generate(movie, size=DEMO_SIZE, frames=DEMO_FRAMES, seed=0)
    for exp in lab.experiments(search=DEMO_SEARCH, scope="mine", limit=1):
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
    from pico_nb.pipeline import score
    from pico_nb.terminal import follow

    lab = Lab(args.home, args.user)
    exp = demo_experiment(lab)
    print(f"demo experiment {exp.id}: {exp.input_path} -> {exp.output_path}")
    run = lab.run_experiment(exp.id)
    code = follow(lab, run)
    if code == 0:
        folder = Path(lab.get_run(run.id).output_path)
        report = score.score(folder, Path(exp.input_path) / "ground_truth.npz")
        print(score.format_report(report))
    return code


DELEGATED = {
    "demo-data": ("pico_nb.pipeline.synthetic", "generate a synthetic movie with ground truth"),
    "score": ("pico_nb.pipeline.score", "score a run's neurons against ground truth"),
}
"""Commands whose own argument parsers live with the pipeline; the CLI hands them over whole."""


def run_delegated(name: str, argv: list[str]) -> int:
    """Run a pipeline tool's own command line as `pico-nb NAME`."""
    module = importlib.import_module(DELEGATED[name][0])
    return int(module.main(argv, prog=f"pico-nb {name}"))


def add_demo_commands(sub: Any) -> None:
    """Register demo, demo-data and score on the CLI."""
    p = sub.add_parser("demo", help="run the built-in pipeline on generated data, end to end")
    p.set_defaults(handler=cmd_demo)
    for name, (_module, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)  # listed; main() hands over
