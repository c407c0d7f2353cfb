"""BAM relative-importance scores and SAM hyperparameter sensitivity of the built-in methods.

Usage: ``python benchmarks/bam_sam.py [--images 24] [--sam-images 8] [--methods ...]
[--sam-methods ...] [--seeds 0 1 2 3 4] [--rise-masks 2000] [--threads N] [--out PATH]``
(``--methods`` or ``--sam-methods`` with no names skips that part).

BAM: ``make_bam(images, seed=7)`` (the training script used seeds 0 and 1), the shipped object and
scene models (``python -m faithmap.zoo.bam``). Per method, each model's map for its predicted
class; MCS on images both models classify correctly, IDR on the scene model's maps of the scene
alone and with the object (both classified correctly), IIR on the scene alone and with a
functionally insignificant patch (``insignificant_patch``, 100 Adam steps; both classified
correctly). SAM: ``sensitivity_sweep`` with the default grids and ``--seeds`` on the built-in CNN,
``make_shapes(sam_images, seed=11)``; pairwise and to-default Spearman and SSIM per
hyperparameter. Prints tables and saves JSON.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019;
Bansal, Agarwal, Nguyen, "SAM: The Sensitivity of Attribution Methods to Hyperparameters",
CVPR 2020.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

import faithmap
from faithmap.bench.sensitivity import DEFAULT_GRIDS, sensitivity_sweep
from faithmap.data import make_shapes
from faithmap.data.bam import make_bam
from faithmap.metrics.bam import (
    input_dependence_rate,
    input_independence_rate,
    model_contrast_score,
)
from faithmap.zoo import load_builtin
from faithmap.zoo.bam import insignificant_patch, load_bam

BAM_METHODS = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "grad_cam",
    "occlusion",
    "rise",
)
"""BAM's gradient family (Gradient, Input x Gradient, IG, SmoothGrad, Guided Backprop, Grad-CAM)
and two perturbation methods."""


def predicted(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        labels: torch.Tensor = model(images).argmax(1)
    return labels


def bam_scores(images: int, methods: list[str]) -> dict[str, Any]:
    batch = make_bam(images, seed=7)
    obj, scene = load_bam("object"), load_bam("scene")
    obj_pred, scene_pred = predicted(obj, batch.images), predicted(scene, batch.images)
    scene_alone = predicted(scene, batch.scene_only)
    patched, change = insignificant_patch(scene, batch.scene_only, batch.images, batch.masks)
    scene_patched = predicted(scene, patched)
    both = (obj_pred == batch.object_labels) & (scene_pred == batch.scene_labels)
    scene_ok = (scene_pred == batch.scene_labels) & (scene_alone == batch.scene_labels)
    patch_ok = (scene_patched == batch.scene_labels) & (scene_alone == batch.scene_labels)
    record: dict[str, Any] = {
        "object_model_accuracy": float((obj_pred == batch.object_labels).double().mean()),
        "scene_model_accuracy": float((scene_pred == batch.scene_labels).double().mean()),
        "scene_model_accuracy_scene_only": float(
            (scene_alone == batch.scene_labels).double().mean()
        ),
        "patch_logit_change_median": float(change.median()),
        "scored": {"mcs": int(both.sum()), "idr": int(scene_ok.sum()), "iir": int(patch_ok.sum())},
        "methods": {},
    }
    for method in methods:
        start = time.perf_counter()
        maps_obj = faithmap.explain(obj, batch.images, method=method)
        maps_scene = faithmap.explain(scene, batch.images, method=method)
        maps_alone = faithmap.explain(scene, batch.scene_only, method=method)
        maps_patched = faithmap.explain(scene, patched, method=method)
        record["methods"][method] = {
            "mcs": model_contrast_score(maps_obj, maps_scene, batch.masks, valid=both).mean,
            "idr": input_dependence_rate(maps_alone, maps_scene, batch.masks, valid=scene_ok).mean,
            "iir": input_independence_rate(
                maps_alone, maps_patched, batch.masks, valid=patch_ok
            ).mean,
            "seconds": time.perf_counter() - start,
        }
        row = record["methods"][method]
        print(
            f"BAM {method:22s} MCS {row['mcs']:+.3f}  IDR {row['idr']:.3f}  IIR {row['iir']:.3f}"
            f"  ({row['seconds']:.0f} s)",
            flush=True,
        )
    return record


def sam_scores(
    images: int, methods: list[str], seeds: list[int], rise_masks: int
) -> dict[str, Any]:
    model = load_builtin("cnn")
    x = make_shapes(images, seed=11).images
    record: dict[str, Any] = {}
    for method in methods:
        start = time.perf_counter()
        rows = []
        params = {"n_masks": rise_masks} if method == "rise" else None
        for sweep in sensitivity_sweep(model, x, method, seeds=seeds, params=params):
            spread = sweep.spread
            rows.append(
                {
                    "parameter": sweep.parameter,
                    "values": [repr(v) for v in sweep.values],
                    "spearman_pairwise": spread.mean("spearman"),
                    "ssim_pairwise": spread.mean("ssim"),
                    "spearman_to_default": spread.mean("spearman", of="to_default"),
                    "ssim_to_default": spread.mean("ssim", of="to_default"),
                }
            )
            row = rows[-1]
            print(
                f"SAM {method:22s} {sweep.parameter:16s} Spearman {row['spearman_pairwise']:.3f}"
                f"  SSIM {row['ssim_pairwise']:.3f}  ({len(sweep.values)} settings)",
                flush=True,
            )
        record[method] = {"sweeps": rows, "seconds": time.perf_counter() - start}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--sam-images", type=int, default=8, dest="sam_images")
    parser.add_argument("--methods", nargs="*", default=list(BAM_METHODS))
    parser.add_argument("--sam-methods", nargs="*", default=list(DEFAULT_GRIDS), dest="sam_methods")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rise-masks", type=int, default=2000, dest="rise_masks")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bam_sam.json"))
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    record: dict[str, Any] = {
        "machine": platform.platform(),
        "threads": torch.get_num_threads(),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "bam": bam_scores(args.images, args.methods) if args.methods else None,
        "sam": (
            sam_scores(args.sam_images, args.sam_methods, args.seeds, args.rise_masks)
            if args.sam_methods
            else None
        ),
    }
    record["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out} ({record['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
