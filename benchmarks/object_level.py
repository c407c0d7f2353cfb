"""Object-level attribution on the built-in detector: VPS against D-RISE, CAMs and perturbation.

Usage: ``python benchmarks/object_level.py [--scenes 8] [--regions slic:25] [--d-rise-masks 1000]
[--rise-masks 1000] [--threads N] [--out PATH]``.

Every explainer gets the same scenes (``make_shapes_scenes``, seed 0) and explains each scene's
first ground-truth object with ``BoxTarget(box, label)`` (IoU x class score, VPS's clue score).
Columns: forward passes per image (``Explanation.cost``; VPS beside the reference search's ``R (R +
1)`` at ``R`` the most regions SLIC gave any scene, an upper bound: faithmap's search makes ``R_i
(R_i + 1) - 4`` on a scene of ``R_i`` regions), wall seconds per image (calibration excluded),
insertion and deletion AUC of the box score on a 49-step pixel path into black (VPS's evaluation of
its baselines, fill 0; every method on the same protocol), VPS's own insertion and deletion AUC on
the curves its search recorded (whole regions, x = area, as the paper reports VPS), the energy
pointing game in the box (min-max energy) and how many maps are all zero. Prints a table and saves
JSON.

References
----------
Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search",
CVPR 2025; Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency Maps",
CVPR 2021 (D-RISE).
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

import faithmap
from faithmap.core.detection import box_targets
from faithmap.data import make_shapes_scenes
from faithmap.metrics import box_energy_pointing_game, deletion, insertion
from faithmap.zoo import load_builtin

STEPS = 49
"""Points of the pixel paths minus one: VPS's evaluation of its baselines."""


def explainers(regions: str, d_rise_masks: int, rise_masks: int) -> dict[str, dict[str, Any]]:
    """Registered method -> parameters."""
    return {
        "vps": {"regions": regions},
        "d_rise": {"n_masks": d_rise_masks},
        "grad_cam": {},
        "layer_cam": {},
        "occlusion": {},
        "rise": {"n_masks": rise_masks, "activation": "logits"},
    }


def recorded_auc(explanation: faithmap.Explanation, curve: str) -> float | None:
    """Mean trapezoid area of a curve the search recorded, over the true area fractions."""
    if curve not in explanation.curves:
        return None
    values, area = explanation.curves[curve].double(), explanation.curves["area"].double()
    widths = area[:, 1:] - area[:, :-1]
    return float(((values[:, 1:] + values[:, :-1]) / 2 * widths).sum(1).mean())


def run(scenes: int, regions: str, d_rise_masks: int, rise_masks: int) -> list[dict[str, Any]]:
    """One row per explainer on ``scenes`` scenes."""
    data = make_shapes_scenes(scenes, seed=0)
    x = data.images
    targets = box_targets(torch.stack([b[0] for b in data.boxes]), [int(k[0]) for k in data.labels])
    model = faithmap.Model(load_builtin("detector"))
    faithmap.explain(
        model, x[:1], method="rise", target=targets[:1], n_masks=64, activation="logits"
    )
    rows = []
    for method, params in explainers(regions, d_rise_masks, rise_masks).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-zero CAM maps are counted below
            explanation = faithmap.explain(model, x, method=method, target=targets, **params)
        flat = explanation.attributions.flatten(1)
        ins = insertion(model, x, explanation, fill=0.0, steps=STEPS, activation="logits")
        dele = deletion(model, x, explanation, fill=0.0, steps=STEPS, activation="logits")
        energy = box_energy_pointing_game(explanation).values
        row = {
            "method": method,
            "params": params,
            "passes_per_image": explanation.cost.forward / scenes,
            "reference_passes_per_image": None
            if explanation.ranking is None
            else explanation.ranking.shape[1] * (explanation.ranking.shape[1] + 1),
            "seconds_per_image": explanation.cost.seconds / scenes,
            "insertion_auc": float(ins.auc.mean()),
            "deletion_auc": float(dele.auc.mean()),
            "recorded_insertion_auc": recorded_auc(explanation, "insertion"),
            "recorded_deletion_auc": recorded_auc(explanation, "deletion"),
            "box_energy_pointing_game": float(energy.nanmean()),
            "all_zero_maps": int((flat.abs().amax(1) == 0).sum()),
        }
        rows.append(row)
        recorded = row["recorded_insertion_auc"], row["recorded_deletion_auc"]
        print(
            f"{method:10s} {row['passes_per_image']:8.0f} "
            + (
                f"{row['reference_passes_per_image']:8d} "
                if row["reference_passes_per_image"] is not None
                else "       - "
            )
            + f"{row['seconds_per_image']:7.2f} {row['insertion_auc']:7.4f} "
            f"{row['deletion_auc']:7.4f} "
            + (
                f"{recorded[0]:7.4f} {recorded[1]:7.4f} "
                if recorded[0] is not None
                else "      -       - "
            )
            + f"{row['box_energy_pointing_game']:7.4f} {row['all_zero_maps']:5d}/{scenes}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--regions", default="slic:25")
    parser.add_argument("--d-rise-masks", type=int, default=1000)
    parser.add_argument("--rise-masks", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/object_level.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{'method':10s} {'passes':>8s} {'ref.':>8s} {'s/img':>7s} {'ins@0':>7s} {'del@0':>7s} "
        f"{'rec.ins':>7s} {'rec.del':>7s} {'box EPG':>7s} {'zero':>8s}"
    )
    rows = run(args.scenes, args.regions, args.d_rise_masks, args.rise_masks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "scenes": args.scenes,
        "regions": args.regions,
        "steps": STEPS,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
