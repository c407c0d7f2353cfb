"""The numbers of a benchmark report: means with 95% t-intervals, ranks, and cost per image.

The confidence interval of a mean over ``n`` samples is Student's t-interval,
``mean ± t(0.975, n - 1) · s / sqrt(n)`` with ``s`` the sample standard deviation. The t
quantile is exact: for an integer number of degrees of freedom the distribution function of
Student's t is a finite trigonometric sum (Abramowitz and Stegun, 26.7.3 and 26.7.4), inverted
here by bisection, so no statistics package is needed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.errors import InvalidParameterError

__all__ = ["CostEntry", "Score", "cost_table", "leaderboard", "mean_interval", "t_quantile"]

LEVEL = 0.95
"""Coverage of the report's confidence intervals."""


def _t_mass(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with ``df`` degrees of freedom (A&S 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    cos2, sin = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        return sin * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(1, (df - 3) // 2 + 1):
        term *= (2 * k) / (2 * k + 1) * cos2
        total += term
    return 2 / math.pi * (theta + sin * total)


def t_quantile(level: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = level`` for Student's t with ``df`` degrees of freedom.

    This is the two-sided critical value: ``t_quantile(0.95, df)`` is the 0.975 quantile.

    Parameters
    ----------
    level : float
        Two-sided coverage, in (0, 1).
    df : int
        Degrees of freedom, at least 1.

    Returns
    -------
    float

    References
    ----------
    .. [1] Abramowitz, M., Stegun, I. A. "Handbook of Mathematical Functions", 1964,
       formulas 26.7.3 and 26.7.4.

    Examples
    --------
    >>> round(t_quantile(0.95, 1), 3)
    12.706
    >>> round(t_quantile(0.95, 30), 4)
    2.0423
    """
    if not 0.0 < level < 1.0:
        raise InvalidParameterError(
            f"The 'level' parameter of t_quantile must be in (0, 1). Got {level!r} instead."
        )
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise InvalidParameterError(
            f"The 'df' parameter of t_quantile must be an int >= 1. Got {df!r} instead."
        )
    low, high = 0.0, 1.0
    while _t_mass(high, df) < level:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_mass(middle, df) < level else (low, middle)
    return (low + high) / 2


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of the finite ``values`` and its t-interval: ``(mean, low, high)``.

    NaNs are left out. With no finite value all three are NaN; with one, the bounds are NaN.

    References
    ----------
    .. [1] Student. "The probable error of a mean." Biometrika 6(1), 1908.

    Examples
    --------
    >>> [round(v, 4) for v in mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])]
    [3.0, 1.0368, 4.9632]
    """
    finite = [float(v) for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(finite)
    if len(finite) == 1:
        return mean, math.nan, math.nan
    half = t_quantile(level, len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite))
    return mean, mean - half, mean + half


@dataclass(frozen=True)
class Score:
    """One leaderboard cell: a method's mean metric on one model, its interval and rank.

    ``rank`` is 1 for the best mean in its (model, metric), following the metric's direction;
    equal means share the smaller rank; a method with no finite value has rank ``None``.
    """

    model: str
    method: str
    metric: str
    higher_is_better: bool
    n: int
    mean: float
    low: float
    high: float
    rank: int | None


def leaderboard(data: ReportData) -> list[Score]:
    """Every (model, metric, method) of ``data``: mean, 95% t-interval and rank.

    In order of first appearance: model-major, then metric, then method.

    References
    ----------
    .. [1] Student. "The probable error of a mean." Biometrika 6(1), 1908.
    """
    values: dict[tuple[str, str, str], list[float]] = {}
    for row in data.rows:
        values.setdefault((row.model, row.metric, row.method), []).append(row.value)
    scores: list[Score] = []
    for model in data.models:
        for metric in data.metrics:
            higher = bool(data.higher_is_better[metric])
            group = []
            for method in data.methods:
                if (model, metric, method) not in values:
                    continue
                found = values[(model, metric, method)]
                group.append((method, sum(not math.isnan(v) for v in found), mean_interval(found)))
            means = [mean for _, _, (mean, _, _) in group if not math.isnan(mean)]
            for method, n, (mean, low, high) in group:
                better = sum((m > mean) if higher else (m < mean) for m in means)
                rank = None if math.isnan(mean) else better + 1
                scores.append(Score(model, method, metric, higher, n, mean, low, high, rank))
    return scores


@dataclass(frozen=True)
class CostEntry:
    """What explaining and scoring one image cost a method on a model, on average.

    ``expl_*`` is the explanation's cost; ``metric_*`` the cost of all the metrics together.
    Passes are forward plus backward passes of the model; seconds are wall-clock.
    """

    model: str
    method: str
    expl_passes: float
    expl_seconds: float
    metric_passes: float
    metric_seconds: float


def _per_image(rows: Sequence[ReportRow]) -> CostEntry:
    by_sample: dict[int, list[ReportRow]] = {}
    for row in rows:
        by_sample.setdefault(row.sample, []).append(row)
    firsts = [group[0] for group in by_sample.values()]
    return CostEntry(
        model=rows[0].model,
        method=rows[0].method,
        expl_passes=statistics.fmean(r.expl_passes for r in firsts),
        expl_seconds=statistics.fmean(r.expl_seconds for r in firsts),
        metric_passes=statistics.fmean(sum(r.metric_passes for r in g) for g in by_sample.values()),
        metric_seconds=statistics.fmean(
            sum(r.metric_seconds for r in g) for g in by_sample.values()
        ),
    )


def cost_table(data: ReportData) -> list[CostEntry]:
    """Mean cost per image of every (model, method), model-major.

    A sample's explanation is counted once however many metrics scored it; its metric costs
    are summed over the metrics.

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018 (model passes as the unit of cost).
    """
    groups: dict[tuple[str, str], list[ReportRow]] = {}
    for row in data.rows:
        groups.setdefault((row.model, row.method), []).append(row)
    return [
        _per_image(groups[(model, method)])
        for model in data.models
        for method in data.methods
        if (model, method) in groups
    ]
