"""Transformers: attention-based, LRP and gradient methods on faithmap's ViT and a ViT-B/16.

(Issue 17 asked for ``benchmarks/transformers.py``; a script of that name would shadow the
``transformers`` package for itself and for ruff's import sorting, hence this name.)

Usage: ``python benchmarks/vision_transformers.py [--images 16] [--hf-images 2]
[--threads N] [--out PATH]``.

Part 1, the built-in ViT (``load_builtin("vit")``, 64 x 64, 8-pixel patches) on ``make_shapes``
(seed 0) with their object masks, each image explained for its true class: forward and backward
passes per image (``Explanation.cost``), wall seconds per image, insertion and deletion AUC
(faithmap's defaults: blur fill, 28 steps, softmax), the pointing game (tolerance 4 px, TorchRay's
15 px at 224 scaled to 64), the energy pointing game and relevance mass accuracy. Part 2, a
Hugging Face ``ViTForImageClassification`` shaped as ViT-B/16 (width 768, 12 blocks of 12 heads,
MLP 3072, 224 x 224, 1000 classes; random weights, CPU) on 224-pixel shapes, each image explained
for its predicted class: passes, seconds, insertion and deletion. Methods: AttnLRP, attention
rollout, Chefer et al.'s gradient-weighted attention, integrated gradients, Grad-CAM and
Layer-CAM (at each model's default layer: the ViT's ``blocks.2``, the second-to-last block of the
Hugging Face model). Prints tables, states which method localises best on the built-in ViT and
saves JSON.

References
----------
Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for Transformers",
ICML 2024; Abnar and Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020; Chefer,
Gur and Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers", ICCV 2021.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

import faithmap
from faithmap.data import make_shapes
from faithmap.metrics import (
    deletion,
    energy_pointing_game,
    insertion,
    pointing_game,
    relevance_mass_accuracy,
)
from faithmap.zoo import load_builtin
from faithmap.zoo.libraries import HuggingFaceLogits

METHODS = (
    "attn_lrp",
    "attention_rollout",
    "attention_gradient",
    "integrated_gradients",
    "grad_cam",
    "layer_cam",
)
LOCALISATION = ("pointing_game", "energy_pointing_game", "relevance_mass_accuracy")


def vit_b16() -> torch.nn.Module:
    """ViT-B/16's shape at 224 x 224 with random weights (no download)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        num_labels=1000,
    )
    torch.manual_seed(0)
    net: torch.nn.Module = ViTForImageClassification(config)
    return HuggingFaceLogits(net.eval())


def measure(
    model: faithmap.Model,
    images: torch.Tensor,
    target: torch.Tensor,
    masks: torch.Tensor | None,
) -> list[dict[str, Any]]:
    """One row per method: cost, faithfulness and (with masks) localisation."""
    n, rows = len(images), []
    for method in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-zero maps are counted below
            explanation = faithmap.explain(model, images, method=method, target=target)
        flat = explanation.attributions.flatten(1)
        row: dict[str, Any] = {
            "method": method,
            "forward_per_image": explanation.cost.forward / n,
            "backward_per_image": explanation.cost.backward / n,
            "seconds_per_image": explanation.cost.seconds / n,
            "insertion_auc": float(insertion(model, images, explanation).auc.mean()),
            "deletion_auc": float(deletion(model, images, explanation).auc.mean()),
            "all_zero_maps": int((flat.abs().amax(1) == 0).sum()),
        }
        if masks is not None:
            row["pointing_game"] = float(
                pointing_game(explanation, masks, tolerance=4).values.nanmean()
            )
            row["energy_pointing_game"] = float(
                energy_pointing_game(explanation, masks).values.nanmean()
            )
            row["relevance_mass_accuracy"] = float(
                relevance_mass_accuracy(explanation, masks).values.nanmean()
            )
        rows.append(row)
        print(
            f"{method:22s} {row['forward_per_image']:6.0f} {row['backward_per_image']:6.0f} "
            f"{row['seconds_per_image']:8.3f} {row['insertion_auc']:7.4f} "
            f"{row['deletion_auc']:7.4f} "
            + " ".join(f"{row.get(m, float('nan')):7.4f}" for m in LOCALISATION)
            + f" {row['all_zero_maps']:3d}/{n}",
            flush=True,
        )
    return rows


def header() -> None:
    print(
        f"{'method':22s} {'fwd':>6s} {'bwd':>6s} {'s/img':>8s} {'ins':>7s} {'del':>7s} "
        f"{'PG':>7s} {'EPG':>7s} {'RMA':>7s} {'zero':>5s}"
    )


def best_localiser(rows: list[dict[str, Any]]) -> str:
    """A sentence naming the best method on each localisation metric."""
    parts = []
    for metric in LOCALISATION:
        best = max(rows, key=lambda row: row[metric])
        parts.append(f"{metric}: {best['method']} ({best[metric]:.3f})")
    return "Best localisation on the built-in ViT -- " + "; ".join(parts) + "."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--hf-images", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/vision_transformers.json")
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"built-in ViT, {args.images} shapes at 64 x 64, true class")
    header()
    data = make_shapes(args.images, seed=0)
    vit = faithmap.Model(load_builtin("vit"))
    faithmap.explain(vit, data.images[:1], method="saliency")  # calibration, not timed below
    builtin = measure(vit, data.images, data.labels, data.masks)
    verdict = best_localiser(builtin)
    print(verdict)

    record: dict[str, Any] = {
        "images": args.images,
        "hf_images": args.hf_images,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "builtin_vit": builtin,
        "best_localisation": verdict,
        "hf_vit_b16": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))  # saved before the long part
    if args.hf_images:
        print(
            f"\nHugging Face ViT-B/16 shape, {args.hf_images} shapes at 224 x 224, predicted class"
        )
        header()
        big = make_shapes(args.hf_images, seed=0, size=224)
        hf = faithmap.Model(vit_b16())
        record["hf_vit_b16"] = measure(hf, big.images, hf.predict(big.images), None)
        args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
