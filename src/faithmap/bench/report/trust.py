"""Which method to trust: ranks per family of metrics with intervals, and where metrics disagree.

**Family ranks.** For each family of metrics (faithfulness, localisation, sanity, robustness,
complexity), a method's rank is the mean of its leaderboard ranks over the family's *common*
cells, the (model, metric) cells where every method has a result (as in
:func:`~faithmap.bench.report.summary.rank_summary`). Its 95% interval is a paired percentile
bootstrap (Efron and Tibshirani 1993): the images of each model are drawn with replacement, the
same draw for every method and metric of that model, the means re-ranked and the ranks averaged
again. A rank interval is what a reader needs to say "A is better than B on localisation":
two methods whose intervals overlap are not separated by this run.

**Metric agreement.** For every pair of metrics, the Spearman rank correlation between their
method orderings on the same model (each metric oriented so that higher is better), averaged
over the models where at least three methods have both. Metrics meant to measure the same
property often order methods differently (Tomsett et al. 2020; Krishna et al. 2022, "The
Disagreement Problem in Explainable Machine Learning"; Barr et al. 2023, "A Song of
(Dis)agreement"); a negative correlation says the two metrics reward opposite methods.

References
----------
Efron, B. and Tibshirani, R. "An Introduction to the Bootstrap." Chapman & Hall, 1993.
Tomsett, R. et al. "Sanity Checks for Saliency Metrics." AAAI 2020.
Krishna, S. et al. "The Disagreement Problem in Explainable Machine Learning." TMLR 2024.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from faithmap.bench.report.data import ReportData
from faithmap.bench.report.palette import metric_family

__all__ = [
    "TRUST_FAMILIES",
    "FamilyRank",
    "MetricAgreement",
    "family_ranks",
    "metric_agreement",
]

TRUST_FAMILIES = ("faithfulness", "localisation", "sanity", "robustness", "complexity")
"""The families of metrics shown in the summary, in this order; others follow."""

Array = np.ndarray[tuple[int, ...], np.dtype[np.float64]]


@dataclass(frozen=True)
class FamilyRank:
    """A method's mean rank on one family of metrics, with its bootstrap interval.

    ``cells`` is the number of (model, metric) cells averaged; ``mean_rank``, ``low`` and
    ``high`` are NaN when the family has no cell every method has.
    """

    method: str
    family: str
    mean_rank: float
    low: float
    high: float
    cells: int


@dataclass(frozen=True)
class MetricAgreement:
    """Spearman correlations between the method orderings of every pair of metrics.

    ``rho[i][j]`` is averaged over ``models[i][j]`` models (NaN where no model has at least
    three methods scored by both metrics); the diagonal is 1 for a metric that ranks at least
    three methods.
    """

    metrics: tuple[str, ...]
    rho: tuple[tuple[float, ...], ...]
    models: tuple[tuple[int, ...], ...]


def _values(data: ReportData) -> dict[tuple[str, str], dict[str, Array]]:
    """Per (model, metric), per method, its value for every sample index of the model (NaN
    where absent)."""
    samples: dict[str, int] = {}
    for row in data.rows:
        samples[row.model] = max(samples.get(row.model, 0), row.sample + 1)
    table: dict[tuple[str, str], dict[str, Array]] = {}
    for row in data.rows:
        cell = table.setdefault((row.model, row.metric), {})
        if row.method not in cell:
            cell[row.method] = np.full(samples[row.model], math.nan)
        cell[row.method][row.sample] = row.value
    return table


def _nanmean(values: Array, axis: int) -> Array:
    """``np.nanmean`` that gives NaN for an all-NaN slice without warning (such a draw ranks
    last)."""
    finite = ~np.isnan(values)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    count = finite.sum(axis=axis)
    means: Array = np.where(count > 0, total / np.maximum(count, 1), math.nan)
    return means


def _ranks(means: Array, higher: bool) -> Array:
    """Rank 1 for the best along axis 0, ties sharing the smaller rank, NaN last."""
    oriented = np.where(np.isnan(means), -math.inf, means if higher else -means)
    better = (oriented[None, :] > oriented[:, None]).sum(axis=1)
    ranks: Array = (better + 1).astype(np.float64)
    return ranks


def family_ranks(data: ReportData, *, resamples: int = 1000, seed: int = 0) -> list[FamilyRank]:
    """Every method's mean rank per family of metrics, with a 95% paired-bootstrap interval.

    Examples
    --------
    >>> from faithmap.bench.report.data import ReportRow
    >>> rows = [ReportRow(i, "cnn", m, "insertion", v + i / 10, 1, 0, 1, 0)
    ...         for m, v in [("a", 0.5), ("b", 0.1)] for i in range(4)]
    >>> ranks = family_ranks(ReportData("x", {}, rows, {"insertion": True}))
    >>> [(r.method, r.family, r.mean_rank, r.low, r.high) for r in ranks]
    [('a', 'faithfulness', 1.0, 1.0, 1.0), ('b', 'faithfulness', 2.0, 2.0, 2.0)]
    """
    table = _values(data)
    methods = list(data.methods)
    rng = np.random.default_rng(seed)
    draws: dict[str, np.ndarray[tuple[int, ...], np.dtype[np.int64]]] = {}
    for model in data.models:
        size = max(
            (len(v) for (m, _), c in table.items() if m == model for v in c.values()), default=0
        )
        draws[model] = rng.integers(0, max(size, 1), size=(resamples, size))
    families = sorted(
        {metric_family(metric) for metric in data.metrics},
        key=lambda f: (TRUST_FAMILIES.index(f) if f in TRUST_FAMILIES else len(TRUST_FAMILIES), f),
    )
    found: list[FamilyRank] = []
    for family in families:
        point: list[Array] = []
        boot: list[Array] = []
        for (model, metric), cell in table.items():
            if metric_family(metric) != family or any(m not in cell for m in methods):
                continue
            values = np.stack([cell[m] for m in methods])  # (M, S)
            means = _nanmean(values, axis=1)
            if np.isnan(means).any():
                continue
            higher = bool(data.higher_is_better[metric])
            point.append(_ranks(means, higher))
            drawn = _nanmean(values[:, draws[model]], axis=2)  # (M, B)
            boot.append(_ranks(drawn, higher))
        for k, method in enumerate(methods):
            if not point:
                found.append(FamilyRank(method, family, math.nan, math.nan, math.nan, 0))
                continue
            mean_rank = float(np.mean([p[k] for p in point]))
            spread = np.mean([b[k] for b in boot], axis=0)
            low, high = np.percentile(spread, [2.5, 97.5])
            found.append(FamilyRank(method, family, mean_rank, float(low), float(high), len(point)))
    return found


def _spearman(a: Array, b: Array) -> float:
    ra = _ranks(a, True)
    rb = _ranks(b, True)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    scale = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return math.nan if scale == 0 else float((ra * rb).sum()) / scale


def metric_agreement(data: ReportData) -> MetricAgreement:
    """Spearman correlation between the method orderings of each pair of metrics.

    Examples
    --------
    >>> from faithmap.bench.report.data import ReportRow
    >>> means = {"a": (0.9, 0.1), "b": (0.5, 0.5), "c": (0.1, 0.9)}  # insertion, deletion
    >>> rows = [ReportRow(0, "cnn", m, metric, v[j], 1, 0, 1, 0) for m, v in means.items()
    ...         for j, metric in enumerate(("insertion", "deletion"))]
    >>> found = metric_agreement(ReportData("x", {}, rows, {"insertion": True, "deletion": False}))
    >>> found.metrics, found.rho
    (('insertion', 'deletion'), ((1.0, 1.0), (1.0, 1.0)))
    """
    table = _values(data)
    metrics = tuple(data.metrics)
    means: dict[tuple[str, str], dict[str, float]] = {}
    for (model, metric), cell in table.items():
        sign = 1.0 if data.higher_is_better[metric] else -1.0
        oriented = {method: sign * float(_nanmean(v, axis=0)) for method, v in cell.items()}
        means[(model, metric)] = {m: v for m, v in oriented.items() if not math.isnan(v)}
    rho: list[list[float]] = []
    counts: list[list[int]] = []
    for first in metrics:
        row, count = [], []
        for second in metrics:
            found = []
            for model in data.models:
                a, b = means.get((model, first), {}), means.get((model, second), {})
                common = [m for m in data.methods if m in a and m in b]
                if len(common) < 3:
                    continue
                value = _spearman(
                    np.array([a[m] for m in common]), np.array([b[m] for m in common])
                )
                if not math.isnan(value):
                    found.append(value)
            row.append(float(np.mean(found)) if found else math.nan)
            count.append(len(found))
        rho.append(row)
        counts.append(count)
    return MetricAgreement(metrics, tuple(tuple(r) for r in rho), tuple(tuple(c) for c in counts))


def _cell(rank: FamilyRank, best: float) -> str:
    if math.isnan(rank.mean_rank):
        return '<td class="missing" title="no cell where every method has a result">—</td>'
    cls = ' class="best"' if rank.mean_rank == best else ""
    title = f"{rank.cells} cells; 95% bootstrap interval [{rank.low:.2f}, {rank.high:.2f}]"
    return (
        f'<td{cls} data-sort="{rank.mean_rank:.6f}" title="{title}">{rank.mean_rank:.2f}'
        f'<span class="ci">[{rank.low:.1f}, {rank.high:.1f}]</span></td>'
    )


def trust_html(data: ReportData, e: Callable[[object], str], colours: Mapping[str, str]) -> str:
    """The report's "which method to trust" section: the family-rank table, a sentence on the
    best of each family, and the metric-agreement matrix."""
    ranks = family_ranks(data)
    families = list(dict.fromkeys(r.family for r in ranks))
    by = {(r.method, r.family): r for r in ranks}
    order = sorted(
        data.methods,
        key=lambda m: _mean_finite([by[(m, f)].mean_rank for f in families]),
    )
    best = {
        f: min((by[(m, f)].mean_rank for m in data.methods), default=math.nan) for f in families
    }
    head = "".join(
        f'<th title="mean rank over the {e(f)} metrics; 1 is best">{e(f)}</th>' for f in families
    )
    body = "".join(
        f'<tr><td class="method"><span class="swatch" style="background:{colours[m]}"></span>'
        f"{e(m)}</td>{''.join(_cell(by[(m, f)], best[f]) for f in families)}</tr>"
        for m in order
    )
    sentences = []
    for family in families:
        tops = [by[(m, family)] for m in data.methods if by[(m, family)].mean_rank == best[family]]
        if not tops:
            continue
        top = tops[0]
        close = [
            m
            for m in data.methods
            if by[(m, family)].low <= top.high and by[(m, family)] not in tops
        ]
        names = " and ".join(e(t.method) for t in tops)
        also = f"; not separated from: {e(', '.join(close))}" if close else "; clearly ahead"
        sentences.append(f"<li><b>{e(family)}</b>: {names}{also}.</li>")
    missing = [f for f in TRUST_FAMILIES if f not in families]
    if missing:
        sentences.append(
            "<li>Not measured in this run: " + e(", ".join(missing)) + " (add their metrics "
            "with <code>--metrics</code>, e.g. model_randomisation, max_sensitivity).</li>"
        )
    return (
        f'<ul class="verdicts">{"".join(sentences)}</ul><div class="scroll"><table '
        f'class="trust"><thead><tr><th>method</th>{head}</tr></thead><tbody>{body}</tbody>'
        f"</table></div>{_agreement_html(metric_agreement(data), e)}"
    )


def _mean_finite(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.inf


def _agreement_html(agreement: MetricAgreement, escape: Callable[[object], str]) -> str:
    names = agreement.metrics
    if len(names) < 2:
        return ""
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            value, models = agreement.rho[i][j], agreement.models[i][j]
            if math.isnan(value):
                cells.append('<td class="missing" title="fewer than 3 common methods">—</td>')
                continue
            tint = "60,80,200" if value > 0 else "200,80,60"  # blue agrees, red opposes
            style = f"background:rgba({tint},{min(abs(value), 1.0) * 0.35:.2f})"
            cells.append(
                f'<td style="{style}" title="Spearman over methods, mean of {models} models">'
                f"{value:+.2f}</td>"
            )
        rows.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
    opposed = [
        f"{names[i]} / {names[j]}"
        for i in range(len(names))
        for j in range(i + 1, len(names))
        if agreement.rho[i][j] < 0
    ]
    note = (
        "Metrics ordering methods in opposite ways (negative correlation): "
        + escape(", ".join(opposed))
        if opposed
        else "No pair of metrics orders the methods in opposite ways."
    )
    return (
        '<h3>Agreement between metrics</h3><p class="note">Spearman correlation between the '
        "method orderings of two metrics (each oriented so that higher is better), mean over "
        f'models. {note}</p><div class="scroll"><table class="agreement"><thead><tr><th></th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
