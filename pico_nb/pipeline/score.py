"""Scoring a run against ground truth: neuron matching, trace, registration and bad-frame accuracy.

Ground truth is the generator's ground_truth.npz or a Neurofinder-format JSON file of
regions ([{"coordinates": [[row, col], ...]}, ...]) drawn by a human annotator.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from pico_nb.contract.errors import ValidationError
from pico_nb.pipeline.writers import label_pixels

CENTRE_PX = 4.0
IOU_MIN = 0.5


def _mask_matrix(masks: Sequence[np.ndarray], size: int) -> sparse.csr_matrix:
    """(neurons × pixels) 0/1 matrix from flat pixel-index arrays."""
    empty = np.zeros(0, int)
    rows = np.concatenate([np.full(len(m), k) for k, m in enumerate(masks)]) if masks else empty
    cols = np.concatenate(masks) if masks else empty
    data = np.ones(len(cols), np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(masks), size))


def _ground_truth(path: Path, shape: tuple[int, int], crop: Sequence[int]) -> dict[str, Any]:
    """Masks (flat indices in the run's cropped frame), centres, and what else is known."""
    y0, x0 = int(crop[0]), int(crop[1])
    h, w = shape
    if path.suffix == ".json":
        regions = json.loads(path.read_text("utf-8"))
        coords = [np.asarray(r["coordinates"], int).reshape(-1, 2) for r in regions]
        truth: dict[str, Any] = {}
    else:
        from pico_nb.pipeline.synthetic import unpack_masks

        with np.load(path) as npz:
            full = unpack_masks(npz)
            coords = [np.argwhere(m) for m in full]
            truth = {k: npz[k] for k in ("traces", "shifts", "bad_frames") if k in npz}
    masks, centres = [], []
    for c in coords:
        inside = c - (y0, x0)
        inside = inside[
            (inside[:, 0] >= 0) & (inside[:, 0] < h) & (inside[:, 1] >= 0) & (inside[:, 1] < w)
        ]
        if len(inside) == 0:
            continue
        masks.append(inside[:, 0] * w + inside[:, 1])
        centres.append(c.mean(axis=0) - (y0, x0))
    truth["masks"] = masks
    truth["centres"] = np.array(centres, float).reshape(-1, 2)
    truth["kept"] = [k for k, c in enumerate(coords) if len(c)]
    return truth


def _match(cost: np.ndarray, ok: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one Hungarian matching, keeping only pairs that pass the criterion."""
    if not cost.size:
        return []
    rows, cols = linear_sum_assignment(np.where(ok, cost, cost.max() + 1e6))
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


def _prf(matches: int, found: int, truth: int) -> dict[str, float]:
    """Precision, recall and F1."""
    precision = matches / found if found else 0.0
    recall = matches / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"matched": matches, "precision": precision, "recall": recall, "f1": f1}


def _not_a_run(out_path: Path) -> str:
    """Each run writes a folder of its own: an experiment's output folder names its runs."""
    runs = sorted(p.parent.name for p in out_path.glob("*run-*/summary.json"))
    if not runs:
        return f"{out_path} has no summary.json (run not finished)"
    return (
        f"{out_path} is an experiment's output folder; score one of its finished runs: "
        + ", ".join(str(out_path / name) for name in runs[-3:])
    )


def _neurons(
    labels: np.ndarray, truth: dict[str, Any]
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Found regions matched to the true ones by centre and by overlap; the centre matches."""
    shape = labels.shape
    count = int(labels.max())
    found_masks = label_pixels(labels)
    found_centres = np.array(
        [np.stack(np.unravel_index(m, shape)).mean(axis=1) for m in found_masks]
    ).reshape(-1, 2)
    true_centres = truth["centres"]

    distance = np.hypot(*(found_centres[:, None, :] - true_centres[None, :, :]).transpose(2, 0, 1))
    by_centre = _match(distance, distance < CENTRE_PX)
    a = _mask_matrix(found_masks, labels.size)
    b = _mask_matrix(truth["masks"], labels.size)
    inter = (a @ b.T).toarray()
    union = np.asarray(a.sum(axis=1)) + np.asarray(b.sum(axis=1)).T - inter
    iou = inter / np.maximum(union, 1)
    by_iou = _match(-iou, iou > IOU_MIN)

    result: dict[str, Any] = {
        "neurons_found": count,
        "neurons_true": len(true_centres),
        "centre": _prf(len(by_centre), count, len(true_centres)),
        "iou": _prf(len(by_iou), count, len(true_centres)),
        "mean_centre_error_px": float(np.mean([distance[r, c] for r, c in by_centre]))
        if by_centre
        else None,
    }
    return result, by_centre


def score_labels(labels: np.ndarray, ground_truth: Path) -> dict[str, Any]:
    """Neuron matching alone for a label image from elsewhere (another pipeline's cells, drawn
    on the whole uncropped frame), scored exactly as a run's own masks."""
    return _neurons(labels, _ground_truth(Path(ground_truth), labels.shape, (0, 0)))[0]


def score(out_path: Path, ground_truth: Path) -> dict[str, Any]:
    """Compare a finished run in out_path with ground truth; raises ValidationError if unusable."""
    out_path, ground_truth = Path(out_path), Path(ground_truth)
    summary_file = out_path / "summary.json"
    if not summary_file.exists():
        raise ValidationError.one("out_path", _not_a_run(out_path))
    if not ground_truth.exists():
        raise ValidationError.one("ground_truth", f"{ground_truth} does not exist")
    summary = json.loads(summary_file.read_text("utf-8"))
    seg = out_path / summary["result_dir"]
    labels = np.load(seg / "masks.npy")
    shape = labels.shape
    truth = _ground_truth(ground_truth, shape, summary["params"]["crop_parameter"])

    result, by_centre = _neurons(labels, truth)
    bad_found = sorted(int(b) for b in summary.get("bad_frames", []))
    if "traces" in truth and (seg / "dff.npy").exists():
        dff = np.load(seg / "dff.npy")
        good = np.ones(dff.shape[1], bool)
        good[[b for b in truth.get("bad_frames", []) if b < len(good)]] = False
        true_traces = truth["traces"][truth["kept"]][:, : dff.shape[1]]
        corr = [np.corrcoef(dff[r, good], true_traces[c, good])[0, 1] for r, c in by_centre]
        result["trace_correlation_median"] = float(np.nanmedian(corr)) if corr else None
    if "shifts" in truth:
        est = np.loadtxt(out_path / "mc" / "shifts.csv", delimiter=",", skiprows=1)
        est = est.reshape(-1, 3)[:, 1:3]
        true = truth["shifts"][: len(est)]
        keep = np.ones(len(est), bool)
        keep[[b for b in truth.get("bad_frames", []) if b < len(keep)]] = False
        residual = est[keep] + true[keep]
        residual -= np.median(residual, axis=0)
        error = np.hypot(residual[:, 0], residual[:, 1])
        result["registration_error_px"] = {
            "mean": float(error.mean()),
            "rms": float(np.sqrt((error**2).mean())),
            "p95": float(np.percentile(error, 95)),
            "max": float(error.max()),
        }
    if "bad_frames" in truth:
        true_bad = {int(b) for b in truth["bad_frames"]}
        result["bad_frames"] = {
            "true": sorted(true_bad),
            "found": bad_found,
            "missed": sorted(true_bad - set(bad_found)),
            "false_alarms": sorted(set(bad_found) - true_bad),
        }
    return result


def format_report(d: dict[str, Any]) -> str:
    """The score as a few readable lines."""
    lines = [f"neurons: {d['neurons_found']} found, {d['neurons_true']} in ground truth"]
    for key, rule in (
        ("centre", f"centre distance < {CENTRE_PX:g} px"),
        ("iou", f"IoU > {IOU_MIN:g}"),
    ):
        m = d[key]
        lines.append(
            f"  by {rule}: matched {m['matched']}, precision {m['precision']:.3f}, "
            f"recall {m['recall']:.3f}, F1 {m['f1']:.3f}"
        )
    if d.get("mean_centre_error_px") is not None:
        lines.append(f"  mean centre error of matches: {d['mean_centre_error_px']:.2f} px")
    if d.get("trace_correlation_median") is not None:
        lines.append(
            f"trace correlation with the true signal (median): {d['trace_correlation_median']:.3f}"
        )
    if "registration_error_px" in d:
        r = d["registration_error_px"]
        lines.append(
            f"registration error: mean {r['mean']:.3f} px, rms {r['rms']:.3f} px, "
            f"95th percentile {r['p95']:.3f} px, max {r['max']:.3f} px"
        )
    if "bad_frames" in d:
        b = d["bad_frames"]
        hits = len(b["found"]) - len(b["false_alarms"])
        lines.append(
            f"bad frames: {hits} of {len(b['true'])} true bad frames found, "
            f"{len(b['false_alarms'])} false alarm(s) "
            f"(missed {b['missed'] or 'none'}, false alarms {b['false_alarms'] or 'none'})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m pico_nb.pipeline.score") -> int:
    """CLI: python -m pico_nb.pipeline.score OUT_PATH GROUND_TRUTH [--json]."""
    parser = argparse.ArgumentParser(prog=prog, description=score.__doc__)
    parser.add_argument("out_path", type=Path, help="output folder of a finished run")
    parser.add_argument("ground_truth", type=Path, help="ground_truth.npz or Neurofinder JSON")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args(argv)
    try:
        result = score(args.out_path, args.ground_truth)
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
