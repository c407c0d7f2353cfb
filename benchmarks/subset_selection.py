"""Subset-selection searches against each other and against RISE and Occlusion, in one run.

Usage: ``python benchmarks/subset_selection.py [--images 8] [--models cnn] [--regions slic:49]
[--threads N] [--out PATH]``.

``--compare`` runs only plain greedy against the faster searches (:data:`COMPARED`:
hierarchical, spatial with 4 and 16 cells), on the models of ``--models`` (``resnet18``: a
ResNet-18-size ``transformers`` ``ResNetForImageClassification``, random weights, 6 classes, at
224 x 224, on ``--large-images`` images) under both search protocols, ``black`` (subsets and
complements on black, the papers') and ``blur/0`` (subsets on a blur, complements on black, as
faithmap's default metrics), and saves to ``benchmarks/results/subset_search.json``: passes per
image, their ratio to greedy's, and the mean and standard error of the paired per-image
differences of the insertion AUC into a blur and into black and of the deletion AUC. Its images
are ``make_shapes`` seed ``--seed`` (default 0); the hierarchical search's settings were chosen
on seeds 1 and 2, the spatial search's (a k-d tree cut at the middle, 4 cells) on seed 0 with
the cnn (so those cnn rows are not held out; ``--seed 1`` gives held-out ones).

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
        "smdl hierarchical": ("smdl", {"regions": regions, "search": "hierarchical"}),
        "smdl spatial": ("smdl", {"regions": regions, "search": "spatial"}),
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


PROTOCOLS: dict[str, dict[str, Any]] = {
    "black": {"fill": 0.0},
    "blur/0": {"fill": "blur", "complement_fill": 0.0},
}
COMPARED: dict[str, dict[str, Any]] = {
    "greedy": {"search": "greedy"},
    "hierarchical": {"search": "hierarchical"},
    "spatial": {"search": "spatial"},
    "spatial cells=16": {"search": "spatial", "cells": 16},
}
"""The searches of ``--compare``: name shown -> SMDL parameters; each is measured against the
first, plain greedy."""


def resnet18() -> torch.nn.Module:
    """A ResNet-18-size ``transformers`` image classifier (random weights, seed 0), logits out."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512])
    config.num_labels = 6
    net = ResNetForImageClassification(config)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.net(pixel_values=x).logits
            return logits

    return Logits().eval()


def compare(model_name: str, images: int, regions: str, seed: int) -> list[dict[str, Any]]:
    """Each search of :data:`COMPARED` against plain greedy under both protocols, per-image AUCs
    kept, and the mean and standard error of the paired differences."""
    large = model_name == "resnet18"
    x = make_shapes(images, seed=seed, size=224 if large else 64).images
    model = faithmap.Model(resnet18() if large else load_builtin(model_name))
    target = model.predict(x)
    rows = []
    for protocol, fills in PROTOCOLS.items():
        found: dict[str, dict[str, Any]] = {}
        for search, chosen in COMPARED.items():
            params = {"regions": regions, **chosen, **fills}
            explanation = faithmap.explain(model, x, method="smdl", target=target, **params)
            found[search] = {
                "passes_per_image": explanation.cost.forward / images,
                "seconds_per_image": explanation.cost.seconds / images,
                "insertion_blur": insertion(model, x, explanation).auc.tolist(),
                "insertion_black": insertion(model, x, explanation, fill=0.0).auc.tolist(),
                "deletion": deletion(model, x, explanation).auc.tolist(),
            }
        row: dict[str, Any] = {
            "model": model_name,
            "protocol": protocol,
            "images": images,
            "seed": seed,
        }
        row.update(found)
        greedy = found["greedy"]
        row["against_greedy"] = {
            search: _against(greedy, found[search], images) for search in list(COMPARED)[1:]
        }
        rows.append(row)
        for search in COMPARED:
            against = row["against_greedy"].get(search)
            print(
                f"{model_name:8s} {protocol:6s} {search:17s} "
                f"{found[search]['passes_per_image']:7.0f} "
                + (f"{against['pass_ratio']:5.1f}x " if against else "      ")
                + " ".join(
                    f"{sum(found[search][m]) / images:6.3f}"
                    + (
                        f" ({against[m + '_difference']['mean']:+.3f}"
                        f"+-{against[m + '_difference']['stderr']:.3f})"
                        if against
                        else " " * 16
                    )
                    for m in ("insertion_blur", "insertion_black", "deletion")
                ),
                flush=True,
            )
    return rows


def _against(greedy: dict[str, Any], other: dict[str, Any], images: int) -> dict[str, Any]:
    """Pass ratio (greedy / other) and paired per-image AUC differences (other - greedy)."""
    out: dict[str, Any] = {
        "pass_ratio": greedy["passes_per_image"] / max(other["passes_per_image"], 1.0)
    }
    for metric in ("insertion_blur", "insertion_black", "deletion"):
        paired = torch.tensor(other[metric]) - torch.tensor(greedy[metric])
        error = float(paired.std() / images**0.5) if images > 1 else float("nan")
        out[f"{metric}_difference"] = {"mean": float(paired.mean()), "stderr": error}
    return out


def main_compare(args: argparse.Namespace) -> None:
    """``--compare``: the table of :func:`compare` for every model, saved as JSON."""
    print(
        f"{'model':8s} {'proto':6s} {'search':17s} {'passes':>7s} {'ratio':>6s} "
        "ins(blur) (-greedy +-se)  ins(black) (-greedy +-se)  del (-greedy +-se)"
    )
    rows = [
        row
        for name in args.models.split(",")
        for row in compare(
            name,
            args.large_images if name == "resnet18" else args.images,
            args.regions,
            args.seed,
        )
    ]
    out = args.out or Path("benchmarks/results/subset_search.json")
    record = {
        "regions": args.regions,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"saved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--models", default="cnn", help="comma-separated built-in models")
    parser.add_argument("--regions", default="slic:49")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--compare", action="store_true", help="the searches against greedy")
    parser.add_argument("--seed", type=int, default=0, help="image seed of --compare")
    parser.add_argument("--large-images", type=int, default=2, help="images for resnet18")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        main_compare(args)
        return
    args.out = args.out or Path("benchmarks/results/subset_selection.json")
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
