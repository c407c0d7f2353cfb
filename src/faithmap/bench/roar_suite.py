"""``faithmap bench --suite roar``: ROAR and KAR beside insertion, deletion and ROAD.

:func:`summarize` turns a ROAR run's rows (:func:`~faithmap.bench.roar.run_roar`) into the
accuracy-versus-fraction table, the per-method comparison of the retraining protocols with the
no-retraining metrics of the same maps on the same model, the Spearman correlation of their
method rankings, and the paper's claims stated as holding or not.

References
----------
Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019. Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML 2022 (ROAD). Petsiuk, Das, Saenko, BMVC 2018
(insertion, deletion).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from faithmap.bench.roar import EVAL_METRICS, ORIGINAL, RANDOM, RoarConfig
from faithmap.bench.work import Row
from faithmap.data import CLASS_NAMES
from faithmap.metrics.similarity import spearman

__all__ = ["SUITE_FIELDS", "RoarSummary", "format_summary", "summarize", "write_summary"]

CHANCE = 1 / len(CLASS_NAMES)
"""Accuracy of a guess among the shapes' classes."""
AGREEMENT = 0.5
"""Rankings with a Spearman correlation below this count as ranking methods differently."""
PLAIN = ("saliency", "integrated_gradients", "guided_backprop")
"""The estimators the paper finds no better than random under ROAR."""
ENSEMBLES = ("smoothgrad_sq", "vargrad")
"""The estimators the paper finds better than random (SmoothGrad-Squared, VarGrad)."""

SUITE_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "name": "roar",
        "reference": (
            'Hooker, Erhan, Kindermans and Kim, "A Benchmark for Interpretability Methods in '
            'Deep Neural Networks", NeurIPS 2019 (ROAR, KAR); Rong et al., ICML 2022 (ROAD)'
        ),
        "models": ("cnn",),
        "families": MappingProxyType(
            {
                "saliency": "gradient",
                "integrated_gradients": "gradient",
                "guided_backprop": "gradient",
                "smoothgrad_sq": "gradient",
                "vargrad": "gradient",
                "grad_cam": "cam",
            }
        ),
        "metrics": EVAL_METRICS,
        "n_samples": RoarConfig.n_eval,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them); the CLI runs
:func:`~faithmap.bench.roar.run_roar` for it instead of a methods x metrics benchmark."""


@dataclass(frozen=True)
class RoarSummary:
    """What a ROAR run measured, by method label.

    Attributes
    ----------
    original : float
        Mean test accuracy retrained on the unmodified images (over seeds).
    accuracy : dict
        ``accuracy[mode][label][percent]``: mean test accuracy over seeds.
    spread : dict
        Same keys: the standard deviation over seeds (0 with one seed).
    scores : dict
        ``scores[label]``: mean ROAR and KAR accuracy over the fractions, and the mean
        insertion, deletion and ROAD of the label's maps on the explained model.
    correlations : dict
        Spearman correlation of the methods' ROAR ranking with each other ranking (random
        left out); ``nan`` when a ranking is flat or fewer than three methods.
    findings : list of str
    """

    original: float
    accuracy: dict[str, dict[str, dict[str, float]]]
    spread: dict[str, dict[str, dict[str, float]]]
    scores: dict[str, dict[str, float]]
    correlations: dict[str, float]
    findings: list[str]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _rho(first: Sequence[float], second: Sequence[float]) -> float:
    if len(first) < 3:
        return math.nan
    value = spearman(torch.tensor([first]), torch.tensor([second]))
    return float(value[0])


def summarize(rows: Sequence[Row], config: RoarConfig) -> RoarSummary:
    """The tables, rank correlations and findings of a ROAR run's rows."""
    by_seed: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    evaluated: dict[tuple[str, str], list[float]] = defaultdict(list)
    original: list[float] = []
    for row in rows:
        if row.method == ORIGINAL:
            original.append(row.value)
        elif "@" in row.metric:
            mode, percent = row.metric.split("@")
            by_seed[(mode, row.method, percent)].append(row.value)
        else:
            evaluated[(row.method, row.metric)].append(row.value)
    accuracy: dict[str, dict[str, dict[str, float]]] = {}
    spread: dict[str, dict[str, dict[str, float]]] = {}
    for (mode, label, percent), values in sorted(by_seed.items()):
        accuracy.setdefault(mode, {}).setdefault(label, {})[percent] = _mean(values)
        spread.setdefault(mode, {}).setdefault(label, {})[percent] = _std(values)
    scores = {
        label: {
            **{mode: _mean(list(accuracy[mode][label].values())) for mode in accuracy},
            **{metric: _mean(evaluated[(label, metric)]) for metric in EVAL_METRICS},
        }
        for label in config.labels
    }
    methods = list(config.methods)
    correlations = {}
    if "roar" in accuracy:
        # Rank agreement as "better estimator" orders: low ROAR and deletion, high others.
        roar_order = [-scores[m]["roar"] for m in methods]
        for other, sign in (("kar", 1), ("insertion", 1), ("deletion", -1), ("road", 1)):
            if other in scores[methods[0]]:
                correlations[other] = _rho(roar_order, [sign * scores[m][other] for m in methods])
    summary = RoarSummary(_mean(original), accuracy, spread, scores, correlations, [])
    return RoarSummary(**{**asdict(summary), "findings": _findings(summary, config)})


def _beats_random(summary: RoarSummary, label: str) -> bool:
    """Lower mean ROAR accuracy over the fractions than random's (means over seeds).

    The mean, not every fraction: at the largest fractions every ranking leaves the retrained
    model at chance, and the order there is the seeds' noise.
    """
    return summary.scores[label]["roar"] < summary.scores[RANDOM]["roar"]


def _verdict(holds: bool) -> str:
    return "holds" if holds else "does not hold"


def _findings(summary: RoarSummary, config: RoarConfig) -> list[str]:
    """The paper's claims, each stated with the numbers that decide it."""
    lines: list[str] = []
    if "roar" not in summary.accuracy:
        return lines
    roar = summary.accuracy["roar"]
    top = max(roar[RANDOM], key=float)
    kept = (roar[RANDOM][top] - CHANCE) / max(summary.original - CHANCE, 1e-12)
    lines.append(
        f"Random removal degrades accuracy slowly: {_verdict(kept >= 0.5)} (with {top} % of "
        f"the pixels removed at random, retrained accuracy {roar[RANDOM][top]:.3f} against "
        f"{summary.original:.3f} unmodified and {CHANCE:.3f} chance: "
        f"{100 * kept:.0f} % of the margin over chance kept)."
    )
    for group, claim in ((PLAIN, False), (ENSEMBLES, True)):
        present = [label for label in group if label in config.methods]
        if not present:
            continue
        beat = {label: _beats_random(summary, label) for label in present}
        detail = ", ".join(
            f"{label} {summary.scores[label]['roar']:.3f}"
            + (" (below random)" if beat[label] else "")
            for label in present
        )
        wording = "beat" if claim else "are no better than"
        holds = all(b == claim for b in beat.values())
        lines.append(
            f"{', '.join(present)} {wording} a random ranking under ROAR: {_verdict(holds)} "
            f"(mean ROAR accuracy over the fractions: {detail}; random "
            f"{summary.scores[RANDOM]['roar']:.3f})."
        )
    for other in ("insertion", "deletion", "road"):
        rho = summary.correlations.get(other, math.nan)
        if math.isnan(rho):
            continue
        lines.append(
            f"ROAR ranks methods differently from {other}: {_verdict(rho < AGREEMENT)} "
            f"(Spearman {rho:+.2f} between the rankings of {len(config.methods)} methods; "
            f"'differently' means below {AGREEMENT})."
        )
    if "kar" in summary.accuracy:
        ranges = {
            mode: max(summary.scores[m][mode] for m in config.methods)
            - min(summary.scores[m][mode] for m in config.methods)
            for mode in ("roar", "kar")
        }
        lines.append(
            f"KAR discriminates between methods less than ROAR: "
            f"{_verdict(ranges['kar'] < ranges['roar'])} (range of the methods' mean accuracy: "
            f"KAR {ranges['kar']:.3f}, ROAR {ranges['roar']:.3f})."
        )
    return lines


def format_summary(summary: RoarSummary, config: RoarConfig) -> list[str]:
    """The summary as plain-text lines: accuracy vs fraction, then the side-by-side table."""
    percents = [f"{100 * t:g}" for t in config.fractions]
    modes = [mode for mode in config.modes if mode in summary.accuracy]
    header = "".join(f"{f'{mode}@{p}':>9}" for mode in modes for p in percents)
    lines = [
        f"Retrained test accuracy (mean over {len(config.seeds)} seeds, {config.fill} fill; "
        f"unmodified {summary.original:.3f}, chance {CHANCE:.3f}):",
        f"{'method':<22}{header}",
    ]
    for label in config.labels:
        cells = "".join(
            f"{summary.accuracy[mode][label][p]:>9.3f}" for mode in modes for p in percents
        )
        lines.append(f"{label:<22}{cells}")
    columns = [*modes, *EVAL_METRICS]
    better = {"roar": "lower", "deletion": "lower"}
    lines += [
        "",
        "ROAR/KAR (mean over fractions) beside the explained model's insertion, deletion, ROAD:",
        f"{'method':<22}" + "".join(f"{c:>11}" for c in columns),
    ]
    for label in config.labels:
        lines.append(
            f"{label:<22}" + "".join(f"{summary.scores[label][c]:>11.3f}" for c in columns)
        )
    lines.append("Better: " + ", ".join(f"{c} {better.get(c, 'higher')}" for c in columns) + ".")
    if summary.correlations:
        pairs = ", ".join(f"{k} {v:+.2f}" for k, v in summary.correlations.items())
        lines.append(f"Spearman correlation of the ROAR ranking with: {pairs}.")
    return lines


def write_summary(summary: RoarSummary, config: RoarConfig, path: Path, **extra: Any) -> None:
    """Save the summary, the configuration's identity and ``extra`` as JSON."""
    record = {"config": config.identity(), **asdict(summary), **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=repr) + "\n")
