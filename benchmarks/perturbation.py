"""Perturbation methods: faithmap against the model-only limit, Captum and shap, in one run.

Usage: ``python benchmarks/perturbation.py [--images 8] [--samples 200] [--threads N]``.

1. **Images** (the built-in CNN, 64x64 ``make_shapes`` images, one SLIC label map given to
   every library): faithmap's FeatureAblation, KernelShap and Lime with their defaults, and
   Captum's FeatureAblation, KernelShap and Lime at their defaults (``perturbations_per_eval=1``)
   and at their best ``perturbations_per_eval``; same inputs, targets, coalition counts. Each is
   reported as its best wall time over ``--repeats`` interleaved rounds and as a ratio to the
   *fresh-input limit* of its passes (the best per-sample time of one ``lerp`` of a new mask
   and a forward, see ``overhead.py``).
2. **Tabular** (a small MLP on 12 features): rows explained per second by shap's
   ``KernelExplainer`` and faithmap's KernelShap with the same number of coalitions per row.
3. **Passes for a given Shapley-value error** on the MLP: faithmap's exact enumeration (zero
   error at ``2**12`` passes), its paired sampling, and Captum's KernelShap sampling, against the
   exact values, at several budgets.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.attr import FeatureAblation as CaptumAblation
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Lime as CaptumLime
from torch import nn

import faithmap
from faithmap.core.regions import make_regions
from faithmap.data import make_shapes
from faithmap.methods import FeatureAblation, KernelShap, Lime
from faithmap.zoo import load_builtin
from overhead import cpu_model, fresh_input_curve, timed, tune

PER_EVAL = [1, 16, 64, 256]


def images_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    net = load_builtin("cnn")
    images = make_shapes(args.images, seed=args.seed).images
    targets = net(images).argmax(1)
    labels = make_regions("slic:25", images).labels
    feature_mask = labels.unsqueeze(1).expand_as(images)
    best_fresh = min(fresh_input_curve(net, images, 0.3).values())
    model = faithmap.Model(net)
    contenders = {
        "feature_ablation": (FeatureAblation(regions=labels), CaptumAblation, {}),
        "kernel_shap": (
            KernelShap(regions=labels, n_samples=args.samples, exact=False),
            CaptumKernelShap,
            {"n_samples": args.samples},
        ),
        "lime": (
            Lime(regions=labels, n_samples=args.samples, activation="logits"),
            CaptumLime,
            {"n_samples": args.samples},
        ),
    }
    rows = []
    for name, (method, captum_class, extra) in contenders.items():
        passes = method.explain(model, images, targets).cost.forward  # warm-up, batch size

        def captum(per_eval: int | None, cls: Any = captum_class, kw: Any = extra) -> Any:
            explainer = cls(net)
            return lambda: explainer.attribute(
                images,
                baselines=0.0,
                target=targets,
                feature_mask=feature_mask,
                perturbations_per_eval=per_eval or 1,
                **kw,
            )

        best_setting, _ = tune(captum, PER_EVAL[1:])
        runs = {
            "faithmap": lambda m=method: m.explain(model, images, targets),
            "captum_default": captum(1),
            "captum_best": captum(best_setting),
        }
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.repeats):  # interleaved, so load changes hit every contender
            for key, run in runs.items():
                times[key] += timed(run, 1)
        rows.append(
            {
                "method": name,
                "passes": passes,
                "limit_s": passes * best_fresh,
                **{f"{key}_s": min(values) for key, values in times.items()},
                **{f"{key}_all_s": values for key, values in times.items()},
                "captum_best_per_eval": best_setting,
            }
        )
    return rows


class MLP(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tabular_section(args: argparse.Namespace) -> dict[str, Any]:
    import shap

    features = 12
    net = MLP(features).eval()
    rows = torch.randn(args.tabular_rows, features)

    def predict(array: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(array).float())[:, 1].numpy()

    explainer = shap.KernelExplainer(predict, np.zeros((1, features), dtype=np.float32))
    shap_rows = min(args.tabular_rows, 20)
    shap_s = timed(
        lambda: explainer.shap_values(rows[:shap_rows].numpy(), nsamples=args.samples, silent=True),
        1,
    )[0]
    method = KernelShap(n_samples=args.samples, exact=False)
    model = faithmap.Model(net)
    method.explain(model, rows, 1)
    ours_s = min(timed(lambda: method.explain(model, rows, 1), args.repeats))
    return {
        "features": features,
        "samples": args.samples,
        "shap_rows_per_s": shap_rows / shap_s,
        "faithmap_rows_per_s": args.tabular_rows / ours_s,
    }


def error_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    features = 12
    net = MLP(features).eval().double()
    rows = torch.randn(8, features, dtype=torch.float64)
    exact = KernelShap(exact=True, activation="logits").explain(net, rows, 1).attributions
    scale = float(exact.abs().mean())
    results = []
    for budget in (64, 256, 1024, 4096):
        ours = KernelShap(n_samples=budget, exact=False, activation="logits")
        ours_error = float((ours.explain(net, rows, 1).attributions - exact).abs().mean())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = CaptumKernelShap(net).attribute(
                rows, baselines=0.0, target=1, n_samples=budget, perturbations_per_eval=256
            )
        captum_error = float((theirs.double() - exact).abs().mean())
        results.append(
            {
                "passes": budget,
                "paired_rel_error": ours_error / scale,
                "captum_rel_error": captum_error / scale,
            }
        )
    results.append({"passes": 2**features, "exact_rel_error": 0.0})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=200, help="coalitions per input")
    parser.add_argument("--tabular-rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/perturbation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="You are providing multiple inputs")
    torch.manual_seed(args.seed)

    images = images_section(args)
    print(
        f"{'method':<17}{'passes':>7}{'faithmap/limit':>16}{'captum-def/limit':>18}"
        f"{'captum-best/limit':>19}{'captum-best/faithmap':>22}"
    )
    for row in images:
        limit = row["limit_s"]
        print(
            f"{row['method']:<17}{row['passes']:>7}{row['faithmap_s'] / limit:>16.2f}"
            f"{row['captum_default_s'] / limit:>18.2f}{row['captum_best_s'] / limit:>19.2f}"
            f"{row['captum_best_s'] / row['faithmap_s']:>22.2f}"
        )
    tabular = tabular_section(args)
    print(
        f"\ntabular MLP, {tabular['samples']} coalitions/row: shap KernelExplainer "
        f"{tabular['shap_rows_per_s']:.1f} rows/s, faithmap {tabular['faithmap_rows_per_s']:.0f} "
        f"rows/s ({tabular['faithmap_rows_per_s'] / tabular['shap_rows_per_s']:.0f}x)"
    )
    errors = error_section(args)
    print("\nmean |error| / mean |Shapley value| on the MLP (12 features):")
    for row in errors:
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "cpu": cpu_model(),
        "threads": args.threads,
        "load_avg": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "images": images,
        "tabular": tabular,
        "errors": errors,
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
