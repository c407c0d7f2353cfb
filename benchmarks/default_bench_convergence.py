"""The default benchmark's sample counts, chosen by convergence rather than by habit.

Usage: ``python benchmarks/default_bench_convergence.py [--models cnn resnet] [--images 4]
[--methods rise kernel_shap] [--criterion maps|scores] [--threshold 0.9] [--tolerance 0.01]
[--out PATH]``.

For each sampled method (RISE's ``n_masks`` and KernelSHAP's ``n_samples`` by default; LIME's
``n_samples`` and HSIC's ``n_design`` on request) the built-in models explain ``make_shapes``
images (data seed 0, predicted class) at a ladder of budgets doubling each step, each budget
with its own seed (the budget's value), so two budgets never share draws. A budget ``n`` has
converged when its map's Spearman rank correlation with the map at ``4 n`` averages at least
``--threshold`` over the images of every model: the smallest such budget is the recommended
default, ``None`` when no budget of the ladder converged (the ``4 n`` map is itself noisy, so
this understates the agreement with the limit).

``--criterion scores`` asks instead what the benchmark reports: a budget ``n`` has converged
when the mean insertion AUC and the mean deletion AUC over the images (the metrics' defaults, as
``faithmap bench`` scores them) each lie within ``--tolerance`` of the same means at ``4 n``, on
every model. A map can be noisy pixel by pixel (RISE's flat background) while the ordering of
its salient regions, which is all the curves read, is already settled. Printed and saved as JSON
(default ``benchmarks/results/default_bench_convergence.json``, or
``default_bench_score_convergence.json`` for scores) with the load average seen.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr

import faithmap
from faithmap import Model
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin

LADDERS: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "rise": ("n_masks", {}, (125, 250, 500, 1000, 2000)),
    "kernel_shap": ("n_samples", {"regions": "slic:25"}, (50, 100, 200, 400, 800)),
    "lime": ("n_samples", {"regions": "slic:25"}, (50, 100, 200, 400, 800)),
    "hsic": ("n_design", {}, (50, 100, 200, 400, 800)),
}


def correlation(first: torch.Tensor, second: torch.Tensor) -> list[float]:
    """Per image, the Spearman rank correlation of two maps (average ranks for ties)."""
    values = []
    for a, b in zip(first.flatten(1), second.flatten(1), strict=True):
        rho = spearmanr(a.double().numpy(), b.double().numpy()).statistic
        values.append(float(rho) if rho == rho else 0.0)  # a constant map: no agreement
    return values


def mean_aucs(model: Model, images: torch.Tensor, maps: torch.Tensor) -> dict[str, float]:
    """Mean insertion and deletion AUC over the images, as ``faithmap bench`` scores them."""
    table = faithmap.evaluate(model, images, maps, metrics=["insertion", "deletion"])
    return {str(k): float(v) for k, v in table.groupby("metric")["value"].mean().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet"])
    parser.add_argument(
        "--methods", nargs="+", default=["rise", "kernel_shap"], choices=list(LADDERS)
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--criterion", choices=["maps", "scores"], default="maps")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--tolerance", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    scores = args.criterion == "scores"
    name = "default_bench_score_convergence" if scores else "default_bench_convergence"
    args.out = args.out or Path(__file__).parent / f"results/{name}.json"
    images = make_shapes(args.images, seed=0).images
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for method in args.methods:
        parameter, fixed, ladder = LADDERS[method]
        rows: dict[str, dict[str, float]] = {}
        for name in args.models:
            model = Model(load_builtin(name).eval())
            maps = {
                n: faithmap.explain(
                    model, images, method=method, seed=n, **{parameter: n}, **fixed
                ).attributions
                for n in ladder
            }
            loads.append(os.getloadavg()[0])
            aucs = {n: mean_aucs(model, images, m) for n, m in maps.items()} if scores else {}
            for n in ladder:
                if 4 * n not in maps:
                    continue
                row = rows.setdefault(str(n), {})
                if scores:
                    for metric, value in aucs[n].items():
                        row[f"{name}_{metric}"] = value
                        row[f"{name}_{metric}_gap"] = abs(value - aucs[4 * n][metric])
                else:
                    rho = correlation(maps[n], maps[4 * n])
                    row[f"{name}_mean"] = sum(rho) / len(rho)
                    row[f"{name}_min"] = min(rho)
        converged = [
            int(n)
            for n, row in rows.items()
            if all(
                all(v <= args.tolerance for k, v in row.items() if k.endswith("_gap"))
                if scores
                else row[f"{m}_mean"] >= args.threshold
                for m in args.models
            )
        ]
        results[method] = {
            "parameter": parameter,
            "fixed": fixed,
            ("auc_gap_to_4x" if scores else "rank_correlation_with_4x"): rows,
            "smallest_converged": min(converged, default=None),
        }
        print(method, parameter, json.dumps(rows), "->", results[method]["smallest_converged"])
    record = {
        "command": "python benchmarks/default_bench_convergence.py "
        f"--models {' '.join(args.models)} --images {args.images} --criterion {args.criterion} "
        f"--threshold {args.threshold} --tolerance {args.tolerance}",
        "criterion": (
            f"|mean AUC at n - mean AUC at 4n| <= {args.tolerance}, insertion and deletion, "
            "on every model"
            if scores
            else f"mean Spearman rho(map at n, map at 4n) >= {args.threshold} on every model"
        ),
        "images": args.images,
        "load_average_seen": [round(v, 2) for v in loads],
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
        "methods": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
