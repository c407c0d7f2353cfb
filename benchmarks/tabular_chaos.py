"""ChaosMining-style tabular ground truth: how well each method recovers the analytic truth.

Usage: ``python benchmarks/tabular_chaos.py [--formulas 0 3 6 12] [--samples 10000] [--noise 100]
[--epochs 1000] [--test 200] [--x-std 0.33] [--threads 1]``.

For each formula an MLP (3 x 100, GELU; ChaosMining's recipe: full-batch Adam, lr 1e-3) is
trained on ``--samples`` rows with ``--noise`` distractor columns, then ``--test`` fresh rows are
explained by integrated gradients (20 Riemann steps, against the path-sum truth), saliency
(signed gradient, against the derivative), feature ablation and KernelSHAP (fill 0, against the
ablation truth; for additive formulas the ablation is the exact Shapley value). Each row of the
table gives the uniformity score, the top-k feature score, the passes per row and the seconds.
The analytic formula itself is explained too ("oracle" rows): its scores show what the metric
gives a perfect model. Results go to ``benchmarks/results/tabular_chaos.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import faithmap
from faithmap.tabular import (
    FORMULAS,
    chaos_regression,
    fit_regressor,
    mlp_regressor,
    top_k_features,
    uniformity_score,
)

METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "integrated_gradients": (
        "integrated_gradients",
        {"steps": 20, "rule": "riemann_left"},
        "path_sum",
    ),
    "saliency": ("saliency", {"absolute": False}, "derivative"),
    "feature_ablation": ("feature_ablation", {}, "ablation"),
    "kernel_shap": ("kernel_shap", {"n_samples": 512}, "ablation"),
}


def score(model: nn.Module, data: Any, label: str, batch_size: int) -> list[dict[str, Any]]:
    """Every method on ``data`` through ``model``, scored against its ground truth."""
    rows = []
    wrapped = faithmap.Model(model, batch_size=batch_size)
    for name, (method, params, truth) in METHODS.items():
        started = time.perf_counter()
        explanation = faithmap.explain(wrapped, data.inputs, method=method, target=0, **params)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "formula": data.formula.expression,
                "model": label,
                "method": name,
                "truth": truth,
                "uniformity": uniformity_score(
                    explanation, getattr(data, truth), data.relevant
                ).mean,
                "top_k": top_k_features(explanation, data.relevant).mean,
                "passes_per_row": explanation.cost.passes / len(data.inputs),
                "seconds": seconds,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formulas", type=int, nargs="+", default=list(range(len(FORMULAS))))
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--noise", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--x-std", type=float, default=0.33)
    parser.add_argument("--hidden", type=int, nargs="+", default=[100, 100, 100])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for index in args.formulas:
        common = {"n_noise": args.noise, "x_std": args.x_std}
        train = chaos_regression(index, n_samples=args.samples, seed=0, **common)
        test = chaos_regression(index, n_samples=args.test, seed=1, **common)
        net = mlp_regressor(train.inputs.shape[1], args.hidden)
        started = time.perf_counter()
        loss = fit_regressor(net, train.inputs, train.targets, epochs=args.epochs, seed=0)
        spent = time.perf_counter() - started
        print(
            f"[{index}] {train.formula.expression}: train MSE {loss:.2e} "
            f"(target variance {float(train.targets.var()):.2e}), {spent:.1f} s"
        )
        results += score(net, test, "mlp", batch_size=1024)
        results += score(test.model(), test, "oracle", batch_size=1024)
    header = (
        f"{'formula':<28} {'model':<7} {'method':<21} {'US':>6} {'top-k':>6} {'passes':>7} {'s':>7}"
    )
    print(header)
    for row in results:
        print(
            f"{row['formula'][:28]:<28} {row['model']:<7} {row['method']:<21} "
            f"{row['uniformity']:6.3f} {row['top_k']:6.3f} {row['passes_per_row']:7.0f} "
            f"{row['seconds']:7.2f}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tabular_chaos.json"
    path.write_text(
        json.dumps({"settings": vars(args) | {"out": str(args.out)}, "rows": results}, indent=2)
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
