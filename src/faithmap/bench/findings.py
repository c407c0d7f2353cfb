"""Which findings of "How explainable are adversarially-robust CNNs?" hold on a suite's numbers.

:func:`findings` turns the rows of the robustness suite (:mod:`faithmap.bench.suites`) into one
plain sentence per finding of Nourelahi et al. (2022), each with a verdict computed from the
numbers and the numbers it rests on:

(i) adversarially robust models score higher than vanilla ones with gradient methods, but not
with CAM or perturbation methods; (ii) AdvProp models are more accurate but not more
explainable; (iii) Grad-CAM and RISE are the best of the 9 methods; (iv) Insertion and Deletion
are biased towards vanilla and robust models respectively because they follow the model's
confidence; (v) no single model is best on accuracy, out-of-distribution accuracy and
explainability at once.

A verdict is "holds" when the finding's condition is met in every case compared, "partly
holds (k of n)" when in some, and "does not hold" when in none. A correlation counts as strong
from :data:`STRONG` (Cohen's convention for a large effect).

References
----------
Nourelahi, Kotthoff, Chen and Nguyen, "How explainable are adversarially-robust CNNs?",
arXiv:2205.13042, 2022.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["BEST", "STRONG", "TOP", "correlations", "findings"]

STRONG: Final = 0.5
"""Smallest Pearson correlation called strong in finding (iv)."""

TOP: Final = 3
"""A method is among "the best" of finding (iii) when it ranks in the top ``TOP``."""

BEST: Final[tuple[str, str]] = ("grad_cam", "rise")
"""The methods finding (iii) names."""

_ROBUST: Final = "_robust"


def _verdict(held: int, cases: int) -> str:
    if cases == 0:
        return "not tested"
    if held == cases:
        return "holds"
    return f"partly holds ({held} of {cases})" if held else "does not hold"


def correlations(x: Any, y: Any) -> tuple[float, float]:
    """Pearson's r and Spearman's rho (Pearson's r of average ranks) of two pandas Series.

    NaN when fewer than three pairs are complete or one side is constant.

    References
    ----------
    Spearman, "The proof and measurement of association between two things", American Journal
    of Psychology, 1904.
    """
    keep = x.notna() & y.notna()
    x, y = x[keep].astype(float), y[keep].astype(float)
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return math.nan, math.nan
    pearson = float(x.corr(y))
    spearman = float(x.rank().corr(y.rank()))
    return pearson, spearman


def _oriented(frame: Any) -> Any:
    """Mean value per (model, metric, method) as column ``score``, signed so higher is better."""
    means = frame.groupby(["model", "metric", "method"], sort=False, as_index=False).agg(
        value=("value", "mean"), higher=("higher_is_better", "first")
    )
    means["score"] = means["value"].where(means["higher"].astype(bool), -means["value"])
    return means[["model", "metric", "method", "score"]]


def _pairs(models: list[str]) -> list[tuple[str, str]]:
    return [(m, m + _ROBUST) for m in models if m + _ROBUST in models]


def _finding_i(oriented: Any, models: list[str], families: Mapping[str, str]) -> str:
    family = oriented["method"].map(lambda m: families.get(m, ""))
    by_family = oriented.assign(family=family).groupby(["model", "metric", "family"])["score"]
    score = by_family.mean().to_dict()
    wins = {"gradient": 0, "cam": 0, "perturbation": 0}
    held, cases, where = 0, 0, []
    for vanilla, robust in _pairs(models):
        for metric in oriented.loc[oriented["model"] == vanilla, "metric"].unique():
            keys = [((vanilla, metric, f), (robust, metric, f)) for f in wins]
            if not all(v in score and r in score for v, r in keys):
                continue
            better = {f: bool(score[r] > score[v]) for f, (v, r) in zip(wins, keys, strict=True)}
            cases += 1
            wins = {f: wins[f] + better[f] for f in wins}
            if better["gradient"] and not better["cam"] and not better["perturbation"]:
                held += 1
                where.append(f"{metric} on {vanilla}")
    detail = (
        f"Robust beats vanilla with gradient methods in {wins['gradient']} of {cases} "
        f"model x metric cases, with CAM methods in {wins['cam']}, with perturbation methods in "
        f"{wins['perturbation']}"
    )
    if where:
        detail += f"; the pattern holds for {', '.join(where)}"
    return (
        "(i) Adversarially robust models score higher with gradient methods but not with CAM or "
        f"perturbation methods: {_verdict(held, cases)}. {detail}."
    )


def _finding_iii(oriented: Any) -> str:
    methods = list(dict.fromkeys(oriented["method"]))
    if not set(BEST) <= set(methods):
        return "(iii) Grad-CAM and RISE are the best of the methods: not tested (not both run)."
    cells = oriented.groupby(["model", "metric"], sort=False)["score"]
    ranked = oriented.assign(rank=cells.rank(ascending=False, method="min"))
    rank = ranked.set_index(["model", "metric", "method"])["rank"].to_dict()
    held, parts = 0, []
    for model, metric in oriented[["model", "metric"]].drop_duplicates().itertuples(index=False):
        first, second = (int(rank[(model, metric, name)]) for name in BEST)
        held += first <= TOP and second <= TOP
        parts.append(f"{metric} on {model}: {first} and {second}")
    mean_rank = ranked.groupby("method")["rank"].mean().sort_values()
    return (
        f"(iii) Grad-CAM and RISE are the best of the {len(methods)} methods: "
        f"{_verdict(held, len(parts))}. Both rank in the top {TOP} in {held} of {len(parts)} "
        f"model x metric cases; mean ranks grad_cam {mean_rank[BEST[0]]:.1f} and rise "
        f"{mean_rank[BEST[1]]:.1f}, best overall {mean_rank.index[0]} "
        f"({mean_rank.iloc[0]:.1f}). Ranks of grad_cam and rise: {'; '.join(parts)}."
    )


def _finding_iv(frame: Any, confidences: Any, models: list[str]) -> str:
    confidence = confidences.groupby("model")["confidence"].mean()
    shown = ", ".join(f"{m} {confidence[m]:.3f}" for m in models if m in confidence.index)
    held, cases, parts = 0, 0, []
    for metric, favoured in [("insertion", "vanilla"), ("deletion", "robust")]:
        rows = frame[frame["metric"] == metric]
        if rows.empty:
            continue
        joined = rows.merge(confidences, on=["model", "sample"], how="inner")
        per_sample = correlations(joined["value"], joined["confidence"])
        means = rows.groupby("model")["value"].mean()
        across = correlations(means, confidence.reindex(means.index))
        # Insertion: higher is better, so vanilla is favoured when its AUC is higher; deletion:
        # lower is better, so robust is favoured when its AUC is lower. Both follow confidence.
        pairs = _pairs([m for m in models if m in means.index])
        biased = sum(bool(means[v] > means[r]) for v, r in pairs)
        checks = [per_sample[0] >= STRONG, across[0] >= STRONG, biased == len(pairs)]
        tested = [not math.isnan(per_sample[0]), not math.isnan(across[0]), bool(pairs)]
        cases += sum(tested)
        held += sum(c and t for c, t in zip(checks, tested, strict=True))
        parts.append(
            f"{metric.capitalize()} AUC vs confidence: per sample Pearson r = "
            f"{per_sample[0]:.2f}, Spearman rho = {per_sample[1]:.2f} (n = {len(joined)}); "
            f"across models r = {across[0]:.2f}, rho = {across[1]:.2f} (n = {len(means)}); "
            f"{metric} AUC is higher for the vanilla model (favouring {favoured}) in {biased} of "
            f"{len(pairs)} pairs"
        )
    return (
        "(iv) Insertion and Deletion are biased towards vanilla and robust models respectively, "
        f"because they follow the model's confidence: {_verdict(held, cases)}. Mean clean "
        f"confidence: {shown}. {'; '.join(parts)}."
    )


def _finding_v(oriented: Any, models: list[str], accuracies: Any) -> str:
    if accuracies is None:
        return "(v) No single model is best on all three criteria: not tested (no accuracies)."
    per_model = oriented.groupby(["metric", "model"], as_index=False)["score"].mean()
    per_model["rank"] = per_model.groupby("metric")["score"].rank(ascending=False)
    explainability = per_model.groupby("model")["rank"].mean()
    table = accuracies.reindex(models).assign(explainability=explainability.reindex(models))
    best = {
        "accuracy": table["accuracy"].idxmax(),
        "ood_accuracy": table["ood_accuracy"].idxmax(),
        "explainability": table["explainability"].idxmin(),
    }
    single = len(set(best.values())) == 1
    rho = correlations(table["accuracy"], -table["explainability"])[1]
    return (
        f"(v) No single model is best on accuracy, out-of-distribution accuracy and "
        f"explainability: {'does not hold' if single else 'holds'}. Most accurate "
        f"{best['accuracy']} ({table['accuracy'].max():.3f}), most accurate out of "
        f"distribution {best['ood_accuracy']} ({table['ood_accuracy'].max():.3f}), most "
        f"explainable {best['explainability']} (mean rank {table['explainability'].min():.2f} "
        f"of {len(table)} over the metrics); Spearman rho between accuracy and explainability "
        f"across models = {rho:.2f} (the paper's \"harder to interpret as they become more "
        f'accurate" would make it negative).'
    )


def findings(
    frame: Any,
    confidences: Any,
    *,
    families: Mapping[str, str],
    accuracies: Any = None,
) -> list[str]:
    """One sentence per finding (i)-(v) of Nourelahi et al., with its verdict and numbers.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`faithmap.evaluate` with a ``model`` column: ``model, method, metric,
        sample, value, higher_is_better``. A robust model is named ``<vanilla>_robust``.
    confidences : pandas.DataFrame
        ``model, sample, confidence``: the softmax probability of each sample's predicted class
        on the clean image.
    families : mapping of str to str
        Method → ``"gradient"``, ``"cam"`` or ``"perturbation"``.
    accuracies : pandas.DataFrame, optional
        Indexed by model, with columns ``accuracy`` and ``ood_accuracy``; needed by (v).

    Returns
    -------
    list of str
        Five sentences, "(i) ..." to "(v) ...".

    References
    ----------
    Nourelahi, Kotthoff, Chen and Nguyen, "How explainable are adversarially-robust CNNs?",
    arXiv:2205.13042, 2022.
    """
    models = list(dict.fromkeys(frame["model"]))
    oriented = _oriented(frame)
    return [
        _finding_i(oriented, models, families),
        "(ii) AdvProp models are more accurate but not more explainable: not tested (the suite "
        "has no AdvProp models).",
        _finding_iii(oriented),
        _finding_iv(frame, confidences, models),
        _finding_v(oriented, models, accuracies),
    ]
