"""The leaderboard's summary and the per-model verdicts: fair comparisons in plain words.

**Mean rank over common cells.** A method ranks in each (model, metric) cell among the methods
that have a result there. The summary averages a method's ranks over the *common* cells only,
those where every method has a result, so every method's mean rank is taken over the same
cells (a method that does not apply to one model, such as LRP on a vision transformer, would
otherwise be averaged over fewer, different cells). The cells left out are named with the
methods they lack.

**Verdicts.** Per model, the best method of each metric family (faithfulness, localisation, ...)
is the one with the lowest mean rank over that family's metrics, among the methods with a
result on all of them; and for each metric, the methods whose mean lies inside the best
method's 95% interval are named as not separable from it at these sample sizes.

References
----------
Demšar, J. "Statistical Comparisons of Classifiers over Multiple Data Sets." JMLR 7, 2006
(average ranks over a common set of data sets).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from faithmap.bench.report.palette import metric_family
from faithmap.bench.report.stats import LEVEL, Score

__all__ = ["RankSummary", "rank_summary", "verdicts"]

_SHOWN = 4
"""Method names listed in a verdict before "and k more"."""


@dataclass(frozen=True)
class RankSummary:
    """Mean ranks over the cells every method has.

    Attributes
    ----------
    mean_rank : dict of str to float
        Per method, the mean of its ranks over :attr:`cells` (NaN when there is none).
    cells : tuple of (model, metric)
        The common cells, in leaderboard order.
    left_out : dict of (model, metric) to tuple of str
        Every other cell, with the methods that have no result in it.
    """

    mean_rank: dict[str, float]
    cells: tuple[tuple[str, str], ...]
    left_out: dict[tuple[str, str], tuple[str, ...]]


def rank_summary(scores: Sequence[Score], methods: Sequence[str]) -> RankSummary:
    """Each method's mean rank over the (model, metric) cells where all ``methods`` are ranked.

    Examples
    --------
    >>> from faithmap.bench.report.stats import Score
    >>> s = [Score("a", m, "ins", True, 4, v, v, v, r) for m, v, r in [("x", .9, 1), ("y", .5, 2)]]
    >>> s += [Score("b", "x", "ins", True, 4, .8, .8, .8, 1)]  # y has no result on model b
    >>> summary = rank_summary(s, ["x", "y"])
    >>> summary.mean_rank, summary.cells, summary.left_out
    ({'x': 1.0, 'y': 2.0}, (('a', 'ins'),), {('b', 'ins'): ('y',)})
    """
    ranked: dict[tuple[str, str], dict[str, int]] = {}
    for s in scores:
        cell = ranked.setdefault((s.model, s.metric), {})
        if s.rank is not None:
            cell[s.method] = s.rank
    cells = tuple(c for c, found in ranked.items() if all(m in found for m in methods))
    left_out = {
        c: tuple(m for m in methods if m not in found)
        for c, found in ranked.items()
        if c not in cells
    }
    mean_rank = {
        m: statistics.fmean(ranked[c][m] for c in cells) if cells else math.nan for m in methods
    }
    return RankSummary(mean_rank, cells, left_out)


def _names(methods: Sequence[str]) -> str:
    if not methods:
        return "none"
    shown = ", ".join(methods[:_SHOWN])
    return shown if len(methods) <= _SHOWN else f"{shown} and {len(methods) - _SHOWN} more"


def _best_of_family(scores: Sequence[Score], metrics: Sequence[str]) -> str:
    """``best (mean rank r over m1, m2)`` among the methods ranked on every one of ``metrics``."""
    ranks: dict[str, list[int]] = {}
    for s in scores:
        if s.metric in metrics and s.rank is not None:
            ranks.setdefault(s.method, []).append(s.rank)
    complete = {m: statistics.fmean(r) for m, r in ranks.items() if len(r) == len(metrics)}
    if not complete:
        return "no method has all of " + ", ".join(metrics)
    top = min(complete.values())
    best = [m for m, r in complete.items() if r == top]
    over = metrics[0] if len(metrics) == 1 else "mean rank over " + ", ".join(metrics)
    where = f"rank 1 on {over}" if len(metrics) == 1 else f"{over}: {top:.2g}"
    return f"{' and '.join(best)} ({where})"


def _within(scores: Sequence[Score], metric: str) -> str:
    """``metric: best; also within its interval: ...`` for one metric of one model."""
    cell = [s for s in scores if s.metric == metric and s.rank is not None]
    best = min(cell, key=lambda s: s.rank if s.rank is not None else math.inf)
    if math.isnan(best.low):
        return f"{metric}: {best.method} (one sample: no interval)"
    close = [s.method for s in cell if s is not best and best.low <= s.mean <= best.high]
    return f"{metric}: {best.method}, with {_names(close)} inside its interval"


def verdicts(scores: Sequence[Score], models: Sequence[str]) -> dict[str, str]:
    """One plain-language sentence per model: the best method of each metric family, and which
    methods the 95% interval of each metric's best does not separate from it.

    Examples
    --------
    >>> from faithmap.bench.report.stats import Score
    >>> s = [Score("cnn", "rise", "insertion", True, 8, .9, .8, 1.0, 1),
    ...      Score("cnn", "ig", "insertion", True, 8, .85, .8, .9, 2)]
    >>> sentence = verdicts(s, ["cnn"])["cnn"]
    >>> sentence.startswith("Best on faithfulness: rise (rank 1 on insertion). Differences")
    True
    >>> sentence.endswith("interval: insertion: rise, with ig inside its interval.")
    True
    """
    sentences = {}
    for model in models:
        own = [s for s in scores if s.model == model and s.rank is not None]
        metrics = list(dict.fromkeys(s.metric for s in own))
        if not metrics:
            continue
        families = list(dict.fromkeys(metric_family(m) for m in metrics))
        best = "; ".join(
            f"best on {family}: "
            + _best_of_family(own, [m for m in metrics if metric_family(m) == family])
            for family in families
        )
        close = "; ".join(_within(own, metric) for metric in metrics)
        sentences[model] = (
            f"{best[0].upper()}{best[1:]}. Differences within the {LEVEL:.0%} interval: {close}."
        )
    return sentences
