"""Which claims of Yang and Kim (2019) hold on the BAM suite's rows.

:func:`summarize` turns the rows of :func:`faithmap.bench.bam_suite.run_bam` into the per-method
means of MCS, IDR and IIR, the setup checks (accuracies, patch logit change) and
:func:`bam_findings`: one sentence per claim, "holds" or "does not hold", with its numbers. The
claims are the metrics' own design (a faithful method scores MCS > 0 and passes IDR and IIR) and
the paper's summary that Grad-CAM does well while guided backprop and IG give false positives.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", arXiv
1907.09701, 2019.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import torch

from faithmap.bench.work import Row

__all__ = [
    "BAM_METRICS",
    "CHECKS",
    "PASS_RATE",
    "SETUP",
    "BamSummary",
    "bam_findings",
    "format_summary",
    "summarize",
]

BAM_METRICS: Final[tuple[str, ...]] = (
    "model_contrast_score",
    "input_dependence_rate",
    "input_independence_rate",
)
"""The per-image rows of a method task, in order."""

SETUP: Final = "setup"
"""The method name of the task that records each image's correctness and patch change."""
CHECKS: Final[tuple[str, ...]] = (
    "object_correct",
    "scene_correct",
    "scene_only_correct",
    "patched_correct",
    "patch_change",
)
"""The per-image rows of the setup task, in order."""
PASS_RATE: Final = 0.5
"""A method passes IDR or IIR when its rate exceeds this (better than a coin flip)."""


@dataclass(frozen=True)
class BamSummary:
    """What a BAM run measured.

    Attributes
    ----------
    scores : dict
        ``scores[method][metric]``: the mean over the scored images (NaN when none).
    scored : dict
        Images each metric scores (the same for every method).
    checks : dict
        Mean of each setup check: the accuracies and the median patch logit change.
    findings : list of str
    """

    scores: dict[str, dict[str, float]]
    scored: dict[str, int]
    checks: dict[str, float]
    findings: list[str]


def summarize(rows: Sequence[Row]) -> BamSummary:
    """The table, the setup checks and the findings of a BAM run's rows."""
    by_key: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        by_key.setdefault((row.method, row.metric), []).append(row.value)
    methods = list(dict.fromkeys(row.method for row in rows if row.method != SETUP))
    scores: dict[str, dict[str, float]] = {}
    scored: dict[str, int] = {}
    for method in methods:
        for metric in BAM_METRICS:
            kept = [v for v in by_key.get((method, metric), []) if not math.isnan(v)]
            scores.setdefault(method, {})[metric] = sum(kept) / len(kept) if kept else math.nan
            scored[metric] = len(kept)
    checks = {
        name: sum(by_key[(SETUP, name)]) / len(by_key[(SETUP, name)])
        for name in CHECKS
        if name != "patch_change" and (SETUP, name) in by_key
    }
    if (SETUP, "patch_change") in by_key:
        checks["patch_change_median"] = float(
            torch.tensor(by_key[(SETUP, "patch_change")]).median()
        )
    return BamSummary(scores, scored, checks, bam_findings(scores))


def _verdict(held: bool) -> str:
    return "holds" if held else "does not hold"


def _listing(scores: Mapping[str, Mapping[str, float]], metric: str, sign: bool = False) -> str:
    form = "{:+.3f}" if sign else "{:.3f}"
    return ", ".join(f"{m} {form.format(s[metric])}" for m, s in scores.items())


def bam_findings(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The paper's claims, each "holds" or "does not hold", from the per-method means.

    A claim about methods missing from ``scores`` is left out.
    """
    if not scores:
        return []
    mcs = {m: s["model_contrast_score"] for m, s in scores.items()}
    lines = [
        "The object model attributes more to the object than the scene model does (MCS > 0) "
        f"for every method: {_verdict(all(v > 0 for v in mcs.values()))} "
        f"(MCS: {_listing(scores, 'model_contrast_score', sign=True)})."
    ]
    for metric, short, what in (
        ("input_dependence_rate", "IDR", "pasting an object the model ignores lowers its"),
        ("input_independence_rate", "IIR", "a patch that leaves the output unchanged keeps its"),
    ):
        passed = [m for m, s in scores.items() if s[metric] > PASS_RATE]
        lines.append(
            f"Every method passes {short} ({what} region's attribution on more than half the "
            f"images): {_verdict(len(passed) == len(scores))} (passing: "
            f"{', '.join(passed) or 'none'}; {short}: {_listing(scores, metric)})."
        )
    if {"grad_cam", "guided_backprop", "integrated_gradients"} <= set(scores):
        idr = {m: s["input_dependence_rate"] for m, s in scores.items()}
        held = idr["grad_cam"] > PASS_RATE and all(
            idr[m] <= PASS_RATE for m in ("guided_backprop", "integrated_gradients")
        )
        lines.append(
            "Grad-CAM passes IDR while guided backprop and IG give false positives (fail it): "
            f"{_verdict(held)} (IDR: grad_cam {idr['grad_cam']:.3f}, guided_backprop "
            f"{idr['guided_backprop']:.3f}, integrated_gradients "
            f"{idr['integrated_gradients']:.3f})."
        )
    best = max(mcs, key=lambda m: mcs[m])
    if "grad_cam" in mcs and len(mcs) > 1:
        lines.append(
            f"Grad-CAM has the highest MCS: {_verdict(best == 'grad_cam')} (highest: {best} "
            f"{mcs[best]:+.3f})."
        )
    return lines


def format_summary(summary: BamSummary) -> list[str]:
    """The summary as plain-text lines: the setup checks, then one row per method."""
    checks = ", ".join(f"{k} {v:.3f}" for k, v in summary.checks.items())
    header = "".join(f"{name:>10}" for name in ("MCS", "IDR", "IIR"))
    lines = [f"setup: {checks}", f"{'method':<22}{header}"]
    for method, row in summary.scores.items():
        lines.append(f"{method:<22}" + "".join(f"{row[m]:>10.3f}" for m in BAM_METRICS))
    counts = ", ".join(f"{m} {n}" for m, n in summary.scored.items())
    lines.append(f"Images scored: {counts}. Higher is better for all three.")
    return lines
