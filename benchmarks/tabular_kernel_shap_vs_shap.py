"""Tabular KernelSHAP on a scikit-learn GradientBoostingClassifier: faithmap against shap.

Usage: ``python benchmarks/tabular_kernel_shap_vs_shap.py [--rows 100] [--background 10]
[--samples 2108] [--repeats 2] [--threads 1] [--seed 0] [--out PATH]``.

A ``GradientBoostingClassifier(random_state=0)`` is fitted on scikit-learn's breast-cancer rows
(569 x 30). The first ``--rows`` rows are explained (the probability of class 1) by
``shap.KernelExplainer`` and by faithmap's ``explain_rows(method="kernel_shap")`` with the same
background (``--background`` rows drawn by ``shap.sample`` with ``--seed``; both average over
it, shap's KernelExplainer way) and the same coalition budget: ``nsamples=--samples`` for shap
(its default for 30 columns is ``2 * 30 + 2048 = 2108``) and ``n_samples=--samples + 2`` for
faithmap, which also counts the full and the empty coalition. shap runs with ``l1_reg=False``
(its default keeps only 10 features at this budget), so both fit the plain Shapley regression.

faithmap is timed as a user meets it: the first round includes measuring the estimator's batch
size (kept per estimator afterwards); a third row, faithmap called in chunks of 1024 rows (the
old fixed cap), shows what the measured batch size gains. Rounds are interleaved and each
entry's best and first times are kept. Reported: seconds, the time ratio faithmap / shap (target
<= 0.5), model rows evaluated, and the agreement of the values (Pearson correlation over all
values and per row, largest absolute difference). Results go to
``benchmarks/results/tabular_kernel_shap_vs_shap.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import faithmap
from faithmap.tabular import explain_rows, tabular_model


def run_shap(model: Any, rows: np.ndarray, background: np.ndarray, samples: int) -> np.ndarray:
    import shap

    calls: list[int] = []

    def positive(array: np.ndarray) -> np.ndarray:
        calls.append(array.shape[0])
        return np.asarray(model.predict_proba(array)[:, 1])

    explainer = shap.KernelExplainer(positive, background)
    values = explainer.shap_values(rows, nsamples=samples, l1_reg=False, silent=True)
    run_shap.rows_evaluated = sum(calls)  # type: ignore[attr-defined]
    return np.asarray(values)


def run_faithmap(
    model: Any, rows: np.ndarray, background: np.ndarray, samples: int, batch_size: int | None
) -> tuple[np.ndarray, faithmap.Explanation]:
    wrapped = tabular_model(model, batch_size=batch_size)
    result = explain_rows(
        wrapped,
        rows,
        method="kernel_shap",
        target=1,
        background=background,
        n_samples=samples + 2,
        seed=0,
    )
    return result.attributions.numpy(), result.explanation


def agreement(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    per_row = [
        float(np.corrcoef(a, b)[0, 1])
        for a, b in zip(ours, theirs, strict=True)
        if a.std() > 0 and b.std() > 0
    ]
    return {
        "pearson_all": float(np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]),
        "pearson_per_row_mean": float(np.mean(per_row)),
        "pearson_per_row_min": float(np.min(per_row)),
        "max_abs_difference": float(np.abs(ours - theirs).max()),
        "max_abs_value": float(np.abs(theirs).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--background", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2108, help="shap's nsamples")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/tabular_kernel_shap_vs_shap.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="shap")

    import shap
    import sklearn
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier

    features, labels = load_breast_cancer(return_X_y=True)
    model = GradientBoostingClassifier(random_state=0).fit(features, labels)
    rows = features[: args.rows]
    background = np.asarray(shap.sample(features, args.background, random_state=args.seed))

    entries = {
        "shap": lambda: (run_shap(model, rows, background, args.samples), None),
        "faithmap": lambda: run_faithmap(model, rows, background, args.samples, None),
        "faithmap_batch_1024": lambda: run_faithmap(model, rows, background, args.samples, 1024),
    }
    times: dict[str, list[float]] = {name: [] for name in entries}
    values: dict[str, np.ndarray] = {}
    explanations: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, run in entries.items():
            started = time.perf_counter()
            result, explanation = run()
            times[name].append(time.perf_counter() - started)
            values[name], explanations[name] = result, explanation

    shap_best, shap_first = min(times["shap"]), times["shap"][0]
    table = []
    for name in entries:
        explanation = explanations[name]
        row: dict[str, Any] = {
            "entry": name,
            "best_seconds": min(times[name]),
            "first_seconds": times[name][0],
            "seconds": times[name],
            "ratio_to_shap_best": min(times[name]) / shap_best,
            "ratio_to_shap_first": times[name][0] / shap_first,
        }
        if explanation is None:
            row["model_rows"] = int(run_shap.rows_evaluated)  # type: ignore[attr-defined]
        else:
            row["model_rows"] = int(explanation.cost.forward)
            row["calibration_seconds"] = float(explanation.cost.calibration_seconds)
            row["agreement_with_shap"] = agreement(values[name], values["shap"])
        table.append(row)
    sizes = tabular_model(model).estimator_batch_sizes  # type: ignore[attr-defined]

    print(
        f"KernelSHAP, GradientBoostingClassifier on breast cancer: {args.rows} rows, "
        f"{args.background} background rows, {args.samples} coalitions, {args.threads} thread(s)"
    )
    print(f"{'entry':<22}{'best s':>9}{'first s':>9}{'/ shap':>8}{'rows':>11}{'pearson':>9}")
    for row in table:
        pearson = row.get("agreement_with_shap", {}).get("pearson_all", float("nan"))
        print(
            f"{row['entry']:<22}{row['best_seconds']:>9.2f}{row['first_seconds']:>9.2f}"
            f"{row['ratio_to_shap_best']:>8.2f}{row['model_rows']:>11}{pearson:>9.4f}"
        )
    print("measured estimator batch sizes:", {str(k): v for k, v in sizes.items()})

    record = {
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "model": "GradientBoostingClassifier(random_state=0)",
            "data": "sklearn.datasets.load_breast_cancer (569 x 30)",
            "shap_l1_reg": False,
            "faithmap_n_samples": args.samples + 2,
            "versions": {
                "faithmap": getattr(faithmap, "__version__", "dev"),
                "shap": shap.__version__,
                "sklearn": sklearn.__version__,
                "torch": torch.__version__,
                "cpus": os.cpu_count(),
            },
        },
        "results": table,
        "estimator_batch_sizes": {str(k): list(v) for k, v in sizes.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
