"""Error against exact Shapley values per model pass: Shapley sampling, Owen values, KernelSHAP.

Usage: ``python benchmarks/shapley_convergence.py [--images 2] [--grid 4x3]
[--budgets 32 128 512] [--seeds 3] [--out PATH]``.

The built-in CNN explains 64 x 64 ``make_shapes`` images for their predicted class over a
regular grid of regions (``--grid RxC``, default 4 x 3 = 12 regions; 4x4 gives 16). The ground
truth scores all ``2**R`` coalitions through the same removal (fill 0) and applies the Shapley
formula. Each method is run at each budget of passes per image: Shapley sampling
(``n_permutations`` = budget / (R - 1), plain and antithetic), KernelSHAP (``n_samples`` =
budget, sampled), Owen values (``max_passes`` = budget, merge and quadtree hierarchies). The
error is ``||phi - phi_exact|| / ||phi_exact||`` per image, averaged over images and seeds; the
passes are what each run really cost (repeated coalitions are scored once, so a method may use
fewer than its budget). Owen values are a different value: their error at the full budget is
their distance from the Shapley values, not noise. Results are printed and saved as JSON
(default ``benchmarks/results/shapley_convergence.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from faithmap import Model
from faithmap.core.method import Method
from faithmap.data import make_shapes
from faithmap.methods.kernel_shap import KernelShap
from faithmap.methods.owen import OwenValues
from faithmap.methods.shapley_sampling import ShapleySampling
from faithmap.zoo import load_builtin


def grid_labels(size: int, rows: int, cols: int) -> torch.Tensor:
    """A ``rows x cols`` grid of regions over a ``size x size`` image, ``(H, W)``."""
    row = torch.arange(size) * rows // size
    col = torch.arange(size) * cols // size
    return row[:, None] * cols + col[None, :]


def exact_shapley(
    model: Model, x: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Shapley values ``(N, R)`` from every coalition's score (the brute force)."""
    count = int(labels.max()) + 1
    codes = torch.arange(2**count)
    keep = ((codes[:, None] >> torch.arange(count)) & 1).float()
    scores = torch.stack(
        [
            model.outputs(x[i : i + 1] * keep[:, labels][:, None])[:, int(targets[i])]
            for i in range(x.shape[0])
        ]
    ).double()
    sizes = keep.sum(1).long()
    weights = torch.tensor(
        [
            math.factorial(k) * math.factorial(count - k - 1) / math.factorial(count)
            for k in range(count)
        ]
        + [0.0],
        dtype=torch.float64,
    )
    values = torch.zeros(x.shape[0], count, dtype=torch.float64)
    for region in range(count):
        without = codes[(codes >> region) & 1 == 0]
        gains = scores[:, without | (1 << region)] - scores[:, without]
        values[:, region] = gains @ weights[sizes[without]]
    return values


def region_values(attributions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The value painted on each region, ``(N, R)``."""
    first = [int((labels.flatten() == r).nonzero()[0]) for r in range(int(labels.max()) + 1)]
    return attributions[:, 0].flatten(1)[:, first].double()


def run(
    method: Method, model: Model, x: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, float]:
    result = method.explain(model, x, targets)
    return region_values(result.attributions, labels), result.cost.forward / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--grid", default="4x3")
    parser.add_argument("--budgets", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/shapley_convergence.json")
    )
    args = parser.parse_args()
    started = time.perf_counter()
    rows, cols = (int(n) for n in args.grid.split("x"))
    net = load_builtin("cnn")
    x = make_shapes(args.images, size=64, seed=0).images
    labels = grid_labels(64, rows, cols)
    count = rows * cols
    model = Model(net, batch_size=64)
    with torch.no_grad():
        targets = net(x).argmax(1)
    exact = exact_shapley(model, x, targets, labels)

    def error(values: torch.Tensor) -> float:
        return float(((values - exact).norm(dim=1) / exact.norm(dim=1)).mean())

    def methods(budget: int, seed: int) -> dict[str, Method]:
        orders = max(1, budget // (count - 1))
        return {
            "shapley_sampling_plain": ShapleySampling(
                regions=labels, n_permutations=orders, antithetic=False, seed=seed
            ),
            "shapley_sampling_antithetic": ShapleySampling(
                regions=labels, n_permutations=orders, seed=seed
            ),
            "kernel_shap": KernelShap(regions=labels, n_samples=budget, exact=False, seed=seed),
        }

    curves: dict[str, list[dict[str, float]]] = {}
    for budget in args.budgets:
        for name in methods(budget, 0):
            errors, passes = [], []
            for seed in range(args.seeds):
                values, cost = run(methods(budget, seed)[name], model, x, targets, labels)
                errors.append(error(values))
                passes.append(cost)
            curves.setdefault(name, []).append(
                {
                    "budget": budget,
                    "passes": sum(passes) / len(passes),
                    "error": sum(errors) / len(errors),
                }
            )
        for hierarchy in ("merge", "quadtree"):
            if 2 ** (2 if hierarchy == "merge" else 4) > budget:
                continue
            owen = OwenValues(regions=labels, hierarchy=hierarchy, max_passes=budget)
            values, cost = run(owen, model, x, targets, labels)
            curves.setdefault(f"owen_{hierarchy}", []).append(
                {"budget": budget, "passes": cost, "error": error(values)}
            )
    results: dict[str, Any] = {
        "model": "cnn",
        "images": args.images,
        "regions": count,
        "seeds": args.seeds,
        "exact_passes_per_image": 2**count,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "seconds": round(time.perf_counter() - started, 1),
        "curves": curves,
    }
    print(f"{count} regions, exact Shapley values from {2**count} coalitions per image")
    print(f"{'method':30s} {'budget':>7s} {'passes':>8s} {'rel. error':>10s}")
    for name, points in curves.items():
        for point in points:
            print(f"{name:30s} {point['budget']:7d} {point['passes']:8.1f} {point['error']:10.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
