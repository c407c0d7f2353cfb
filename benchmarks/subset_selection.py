"""Subset-selection searches against each other and against RISE and Occlusion, in one run.

Usage: ``python benchmarks/subset_selection.py [--images 8] [--models cnn] [--regions slic:49]
[--threads N] [--out PATH]``.

Every explainer gets the same built-in images (``make_shapes``, seed 0) and the predicted classes
as explicit targets. Columns: forward passes per image (``Explanation.cost``), wall seconds per
image (``Explanation.cost.seconds``, calibration excluded), Insertion AUC (RISE's blur
substrate, faithmap's default), Insertion AUC into black (``ins@0``, the SMDL/LiMA papers'
protocol) and Deletion AUC (to black) from :mod:`faithmap.metrics` on each attribution map (the
same pixel protocol for every method),
the Insertion AUC of the curve the search recorded on whole regions (x = area; subset methods
only), and the highest confidence within 25 % of the area (pixel path, 50 steps, fill 0, for
every method). The SMDL rows share one objective (consistency, collaboration, confidence = 1)
and differ only in the search; LiMA runs at its own defaults (black fill, as the paper) and
with the fills of faithmap's default metrics (``lima blur/0``: subsets on a blur, complements on
black); Occlusion at its default (black) and with a blur fill. Prints a table and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import torch

import faithmap
from faithmap.data import make_shapes
from faithmap.metrics import deletion, highest_confidence, insertion
from faithmap.zoo import load_builtin


def explainers(regions: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name shown -> (registered method, parameters)."""
    return {
        "smdl greedy": ("smdl", {"regions": regions, "search": "greedy"}),
        "smdl lazy": ("smdl", {"regions": regions, "search": "lazy"}),
        "smdl stochastic": ("smdl", {"regions": regions, "search": "stochastic"}),
        "smdl bidirectional": ("smdl", {"regions": regions, "search": "bidirectional"}),
        "lima": ("lima", {"regions": regions}),
        "lima blur/0": ("lima", {"regions": regions, "fill": "blur", "complement_fill": 0.0}),
        "rise": ("rise", {}),
        "occlusion": ("occlusion", {}),
        "occlusion blur": ("occlusion", {"fill": "blur"}),
    }


def recorded_insertion(explanation: faithmap.Explanation) -> float | None:
    """Mean trapezoid area of the recorded insertion curve over the true area fractions."""
    if "insertion" not in explanation.curves:
        return None
    curve, area = explanation.curves["insertion"], explanation.curves["area"]
    widths = area[:, 1:] - area[:, :-1]
    return float(((curve[:, 1:] + curve[:, :-1]) / 2 * widths).sum(1).mean())


def run(model_name: str, images: int, regions: str) -> list[dict[str, Any]]:
    """One row per explainer on ``images`` built-in images for the model ``model_name``."""
    x = make_shapes(images, seed=0).images
    model = faithmap.Model(load_builtin(model_name))
    target = model.predict(x)
    faithmap.explain(model, x[:1], method="rise", target=target[:1], n_masks=64)  # calibrate
    rows = []
    for shown, (method, params) in explainers(regions).items():
        explanation = faithmap.explain(model, x, method=method, target=target, **params)
        seconds = explanation.cost.seconds  # batch-size calibration excluded
        ins = insertion(model, x, explanation)
        ins_black = insertion(model, x, explanation, fill=0.0)
        dele = deletion(model, x, explanation)
        confidence = highest_confidence(model, x, explanation, target=target, budgets=(0.25,))
        row = {
            "model": model_name,
            "explainer": shown,
            "method": method,
            "params": params,
            "passes_per_image": explanation.cost.forward / images,
            "seconds_per_image": seconds / images,
            "insertion_auc": float(ins.auc.mean()),
            "insertion_auc_black": float(ins_black.auc.mean()),
            "deletion_auc": float(dele.auc.mean()),
            "recorded_insertion_auc": recorded_insertion(explanation),
            "highest_confidence_25": float(confidence.highest[:, 0].nanmean()),
            "regions": None if explanation.ranking is None else explanation.ranking.shape[1],
        }
        rows.append(row)
        print(
            f"{model_name:7s} {shown:19s} {row['passes_per_image']:8.0f} "
            f"{row['seconds_per_image']:7.2f} {row['insertion_auc']:7.4f} "
            f"{row['insertion_auc_black']:7.4f} "
            f"{row['deletion_auc']:7.4f} "
            + (
                f"{row['recorded_insertion_auc']:7.4f}"
                if row["recorded_insertion_auc"] is not None
                else "      -"
            )
            + f" {row['highest_confidence_25']:7.4f}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--models", default="cnn", help="comma-separated built-in models")
    parser.add_argument("--regions", default="slic:49")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/subset_selection.json")
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{'model':7s} {'explainer':19s} {'passes':>8s} {'s/img':>7s} {'ins':>7s} {'ins@0':>7s} "
        f"{'del':>7s} "
        f"{'rec.ins':>7s} {'hc@25%':>7s}"
    )
    rows = [row for name in args.models.split(",") for row in run(name, args.images, args.regions)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "images": args.images,
        "regions": args.regions,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
