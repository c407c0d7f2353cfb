"""Ground-truth scores of tabular attributions: ChaosMining's uniformity and top-k scores.

Both read attributions ``(N, F)`` (one value per column) and a ground truth of the same
shape. The top-k score reads only which columns are relevant, a boolean mask, and is
registered as the metric ``"top_k_features"`` (its ``masks`` are those relevance masks). The
uniformity score compares values with a real-valued ground-truth attribution (a derivative,
ablation or path sum), which is not a mask, so it is a plain function, not a registered metric.

References
----------
Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local Attribution
Methods in Low SNR Environments", arXiv 2406.12150, 2024.
"""

from __future__ import annotations

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Interval
from faithmap.core.explanation import attribution_map
from faithmap.core.metric import MetricResult
from faithmap.core.registry import register_metric
from faithmap.core.validation import check_int
from faithmap.errors import ShapeError

EPSILON = 1e-7
"""The reference's guard in ``|a - g| / (|a| + |g| + eps)``."""


def _columns(explanation: object, owner: str) -> Tensor:
    values = attribution_map(explanation).detach()
    if values.dim() != 2:
        raise ShapeError(
            f"{owner} scores tabular attributions of shape (N, F). Got "
            f"{tuple(values.shape)} instead."
        )
    if not bool(torch.isfinite(values).all()):
        raise ShapeError(f"The attributions for {owner} contain NaN or inf values.")
    return values


def _like(values: Tensor, other: object, name: str, owner: str) -> Tensor:
    if not isinstance(other, Tensor):
        raise ShapeError(
            f"The {name!r} of {owner} must be a tensor of shape {tuple(values.shape)}. Got "
            f"{type(other).__name__} instead."
        )
    if other.dim() == 1:
        other = other.expand(values.shape[0], -1)
    if other.shape != values.shape:
        raise ShapeError(
            f"The {name!r} of {owner} must have the attributions' shape {tuple(values.shape)} "
            f"(or ({values.shape[1]},) for every row). Got {tuple(other.shape)} instead."
        )
    return other.to(values.device)


def _relevant(values: Tensor, masks: object, owner: str) -> Tensor:
    relevant = _like(values, masks, "masks", owner)
    if relevant.dtype != torch.bool:
        if bool(((relevant != 0) & (relevant != 1)).any()):
            raise ShapeError(
                f"The masks of {owner} must be boolean (true on relevant columns) or hold only "
                "0 and 1. Threshold them first, e.g. masks > 0."
            )
        relevant = relevant != 0
    return relevant


def uniformity_score(explanation: object, truth: Tensor, masks: Tensor) -> MetricResult:
    """ChaosMining's uniformity score of attributions against a ground-truth attribution.

    Attributions and truth are each divided by their L1 norm over all ``F`` columns (signed
    values kept); on the relevant columns ``R`` the score is
    ``mean_{i in R} [1 - |a_i - g_i| / (|a_i| + |g_i| + 1e-7)]``. It is 1 when the normalised
    attribution equals the normalised truth, and falls as mass moves to distractor columns or
    between relevant ones. An all-zero attribution scores 0 (the reference divides by zero and
    gives NaN); a sample with no relevant column gives NaN.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, F)``.
    truth : Tensor
        Ground truth ``(N, F)``, e.g. :attr:`~faithmap.tabular.chaos.ChaosSet.path_sum`.
    masks : Tensor
        ``(N, F)`` or ``(F,)`` boolean, true on the relevant columns.

    Returns
    -------
    MetricResult
        ``metric="uniformity"``, one value per sample, higher is better.

    References
    ----------
    Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local
    Attribution Methods in Low SNR Environments", arXiv 2406.12150, 2024.

    Examples
    --------
    >>> import torch
    >>> truth = torch.tensor([[2.0, -1.0, 0.0]])
    >>> uniformity_score(truth * 3, truth, torch.tensor([True, True, False])).values
    tensor([1.])
    """
    values = _columns(explanation, "uniformity_score").double()
    truth = _like(values, truth, "truth", "uniformity_score").double()
    relevant = _relevant(values, masks, "uniformity_score")
    tiny = torch.finfo(torch.float64).tiny
    a = values / values.abs().sum(1, keepdim=True).clamp_min(tiny)
    g = truth / truth.abs().sum(1, keepdim=True).clamp_min(tiny)
    agreement = 1 - (a - g).abs() / (a.abs() + g.abs() + EPSILON)
    counts = relevant.sum(1)
    scores = (agreement * relevant).sum(1) / counts
    scores = torch.where(counts > 0, scores, torch.full_like(scores, float("nan")))
    return MetricResult(
        metric="uniformity",
        values=scores.float(),
        higher_is_better=True,
        choices={"normalise": "l1 over all columns", "epsilon": EPSILON},
    )


@register_metric(
    "top_k_features",
    constraints={"k": [None, Interval(int, 1)], "seed": [SEED]},
    higher_is_better=True,
)
def top_k_features(
    explanation: object, masks: Tensor, *, k: int | None = None, seed: int = 0
) -> MetricResult:
    """Fraction of the ``k`` columns of largest ``|attribution|`` that are relevant.

    ChaosMining's top-k feature score: per sample, the ``k`` columns with the largest absolute
    attribution are taken (``k`` defaults to the sample's number of relevant columns) and the
    score is the fraction of them that are relevant. Ties are broken by a permutation of the
    columns drawn per sample from ``seed``, so a constant map scores at chance (``k/F`` in
    expectation), not 1 because the relevant columns happen to come first.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, F)``.
    masks : Tensor
        ``(N, F)`` or ``(F,)`` boolean, true on the relevant columns.
    k : int or None, default=None
        Columns taken per sample; ``None``: each sample's number of relevant columns.
    seed : int, default=0
        Seed of the tie-breaking permutations.

    Returns
    -------
    MetricResult
        ``metric="top_k_features"``, one value per sample in ``[0, 1]`` (NaN for a sample with
        no relevant column when ``k`` is ``None``), higher is better.

    References
    ----------
    Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local
    Attribution Methods in Low SNR Environments", arXiv 2406.12150, 2024.

    Examples
    --------
    >>> import torch
    >>> attributions = torch.tensor([[0.1, -3.0, 0.2, 0.0], [1.0, 0.0, 0.0, 2.0]])
    >>> top_k_features(attributions, torch.tensor([False, True, True, False])).values
    tensor([1., 0.])
    """
    values = _columns(explanation, "top_k_features")
    relevant = _relevant(values, masks, "top_k_features")
    n, columns = values.shape
    if k is not None:
        check_int(k, "k", "top_k_features", low=1)
        if k > columns:
            raise ShapeError(
                f"The 'k' parameter of top_k_features must be at most the number of columns "
                f"{columns}. Got {k} instead."
            )
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.rand(n, columns, generator=generator).argsort(dim=1).to(values.device)
    order = values.abs().gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    ranked = relevant.gather(1, shuffle).gather(1, order).float()  # relevance, largest |a| first
    counts = torch.full((n,), k, device=values.device) if k is not None else relevant.sum(1)
    taken = torch.arange(columns, device=values.device)[None, :] < counts[:, None]
    scores = (ranked * taken).sum(1) / counts
    scores = torch.where(counts > 0, scores, torch.full_like(scores, float("nan")))
    return MetricResult(
        metric="top_k_features",
        values=scores,
        higher_is_better=True,
        choices={"k": "relevant count" if k is None else k, "ties": "random", "seed": seed},
    )
