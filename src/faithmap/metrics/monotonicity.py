"""Monotonicity metrics: does the output follow the attributions as features are inserted or
removed one group at a time?

* :func:`monotonicity` (Arya et al. 2019; Quantus ``Monotonicity``): starting from the fill,
  insert the units in *increasing* order of importance; 1 if the target score never decreases
  along the way, else 0.
* :func:`monotonicity_correlation` (Nguyen & Martínez 2020; Quantus ``MonotonicityCorrelation``):
  the Spearman correlation, over groups of units, between a group's attribution and the mean
  squared change of the target score when that group alone is removed.

Both rank units by ``|a|`` of the channel-summed map by default (Quantus' ``abs=True``), ties
broken by a seeded permutation, and cut the ranked units into ``steps`` consecutive groups
(``None``: one unit per group, Quantus' ``features_in_step=1``). Every perturbed input is built
by the removal engine and scored in one stream through :class:`~faithmap.Model`.

References
----------
Arya et al., "One Explanation Does Not Fit All: A Toolkit and Taxonomy of AI Explainability
Techniques", arXiv 1909.03012, 2019.
Nguyen, Martínez, "On Quantitative Aspects of Model Interpretability", arXiv 2007.07584, 2020.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import get_args

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Interval, options
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, Prepared, prepare
from faithmap.core.model import ModelLike
from faithmap.core.ordering import UnitLike, describe_unit, unit_ranks, unit_regions
from faithmap.core.readout import Activation
from faithmap.core.regions import UNIT, Regions
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, make_removal
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError
from faithmap.metrics.curves import RankBy, ranked_curve, ranking_map
from faithmap.metrics.fidelity import correlate
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS


@dataclass(frozen=True, kw_only=True)
class MonotonicityResult(MetricResult):
    """Monotonicity with its insertion curve.

    Attributes
    ----------
    curve : Tensor
        ``(N, steps + 1)`` target scores: the fill alone (point 0), then after each group of
        units is inserted, least important first.
    """

    curve: Tensor


def _ranked(
    prepared: Prepared, regions: Regions, rank_by: RankBy, seed: int
) -> tuple[Tensor, Tensor]:
    """Ascending-importance rank of each pixel's unit ``(N, H * W)`` and units per image."""
    return unit_ranks(ranking_map(prepared.attributions, rank_by), regions, "lerf", seed)


def _group_bounds(units: Tensor, steps: int | None, owner: str) -> tuple[Tensor, int]:
    """``(N, steps + 1)`` units moved after each group (``round(k / steps * units)``)."""
    fewest = int(units.min())
    count = fewest if steps is None else steps
    if count > fewest:
        raise InvalidParameterError(
            f"The 'steps' parameter of {owner} cannot exceed the number of units of an image "
            f"({fewest}). Got {steps} instead; use steps=None (one unit per step) or fewer steps."
        )
    grid = torch.arange(count + 1, device=units.device, dtype=torch.float64) / count
    if steps is None:
        return torch.arange(count + 1, device=units.device).expand(units.shape[0], -1), count
    return torch.round(grid[None, :] * units[:, None].double()).long(), count


MONOTONICITY_CONSTRAINTS = {
    **REMOVAL_CONSTRAINTS,
    "steps": [None, Interval(int, 1)],
    "unit": UNIT,
    "rank_by": [options(get_args(RankBy))],
    "seed": [SEED],
}


@register_metric(
    "monotonicity",
    constraints=MONOTONICITY_CONSTRAINTS,
    higher_is_better=True,
    constant_model=1.0,
)
def monotonicity(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    steps: int | None = None,
    unit: UnitLike = "pixel",
    fill: FillLike | Removal = 0.0,
    rank_by: RankBy = "absolute",
    activation: Activation = "softmax",
    seed: int = 0,
) -> MonotonicityResult:
    """1 if inserting units least important first never lowers the target score, else 0.

    The curve starts at the fill alone and inserts the ranked units in ``steps`` groups; the
    value is 1 when every step of the curve is ``>= 0`` (exactly, as Quantus). Higher is
    better. A model that ignores its input gives 1.

    Differences from Quantus 0.6.0: its batched ``Monotonicity`` replaces the chosen features
    of the all-baseline image with the baseline again, so the input never changes and every
    sample scores ``True``; faithmap inserts ``x`` itself, as Arya et al. intend. Quantus'
    curve starts after the first insertion; faithmap's includes the fill alone, so it also
    asks that the first group not lower the score (Quantus' fixed loop equals
    ``all(diff(curve[:, 1:]) >= 0)``). Quantus' ``"black"`` fill is each image's minimum;
    faithmap's default is the constant 0 (black for images in [0, 1]); Quantus ranks channel
    values, faithmap whole pixels (channels summed).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    steps : int or None, default=None
        Groups the ranked units are inserted in; ``None``: one unit at a time (``units + 1``
        passes per image, Quantus' default ``features_in_step=1``).
    unit : str, Regions or Tensor, default="pixel"
    fill : str, float, callable or Removal, default=0.0
        The image the units are inserted into.
    rank_by : {"absolute", "signed"}, default="absolute"
    activation : {"softmax", "logits"}, default="softmax"
        Quantus: ``softmax=True``.
    seed : int, default=0
        Seed of the tie-break between equal attributions.

    Returns
    -------
    MonotonicityResult
        Cost: ``steps + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Arya et al., "One Explanation Does Not Fit All: A Toolkit and Taxonomy of AI
    Explainability Techniques", arXiv 1909.03012, 2019.
    """
    owner = "monotonicity"
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    regions = unit_regions(unit, x)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)
        ranks, units = _ranked(prepared, regions, rank_by, seed)
        bounds, count = _group_bounds(units, steps, owner)
        curve = ranked_curve(
            wrapped,
            x,
            resolved,
            removal.substrate(x),
            ranks,
            bounds,
            insert=True,
            activation=activation,
        )
    values = (curve.diff(dim=1) >= 0).all(1).to(curve.dtype)
    home = prepared.home
    return MonotonicityResult(
        metric=owner,
        values=values.to(home),
        curve=curve.to(home),
        higher_is_better=True,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "steps": count,
            "unit": describe_unit(regions),
            "fill": removal.describe(),
            "rank_by": rank_by,
            "activation": activation,
            "target": prepared.rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )


@register_metric(
    "monotonicity_correlation",
    constraints={**MONOTONICITY_CONSTRAINTS, "n_samples": [Interval(int, 1)]},
    higher_is_better=True,
    constant_model=math.nan,
)
def monotonicity_correlation(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    steps: int | None = None,
    unit: UnitLike = "pixel",
    fill: FillLike | Removal = 0.0,
    n_samples: int = 1,
    rank_by: RankBy = "absolute",
    activation: Activation = "softmax",
    seed: int = 0,
) -> MetricResult:
    """Spearman correlation between each group's attribution and the change its removal causes.

    For each of ``steps`` groups ``G`` of ranked units, ``var(G)`` is the mean over
    ``n_samples`` fills of ``(f(x with G filled) - f(x))**2``; the value is the Spearman
    correlation of ``sum(a[G])`` (of ``|a|`` with ``rank_by="absolute"``) with ``var(G)``.
    Higher is better, in [-1, 1]; NaN where undefined (constant attributions, or a model whose
    output no removal changes).

    Differences from Quantus 0.6.0: Quantus divides ``var`` by ``f(x)**2`` (when
    ``|f(x)| >= eps``), a constant per image that no rank correlation sees, so faithmap leaves it
    out. Quantus' default fill ``"uniform"`` draws one U(0, 1) value per image and draw from
    NumPy's global generator (100 draws); faithmap's default is one deterministic fill (the
    constant 0) and its random fill is ``fill="noise"`` with ``n_samples`` seeded draws. With the
    same constant fill and groups the two agree.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed).
    target : None, int, tensor or callable
    steps : int or None, default=None
        Groups of consecutive ranked units; ``None``: every unit its own group.
    unit : str, Regions or Tensor, default="pixel"
    fill : str, float, callable or Removal, default=0.0
    n_samples : int, default=1
        Fills drawn per group; more than 1 needs a random fill (``"noise"``), each draw with
        its own seed ``seed + draw``.
    rank_by : {"absolute", "signed"}, default="absolute"
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0
        Seed of the tie-break and of the noise fills.

    Returns
    -------
    MetricResult
        Cost: ``steps * n_samples + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Nguyen, Martínez, "On Quantitative Aspects of Model Interpretability", arXiv 2007.07584,
    2020.
    """
    owner = "monotonicity_correlation"
    removal = make_removal(fill)
    random_fill = not callable(removal.fill) and removal.fill == "noise"
    if n_samples > 1 and not random_fill:
        raise InvalidParameterError(
            f"The 'n_samples' parameter of {owner} draws several fills, which needs the random "
            f"fill 'noise'. Got n_samples={n_samples} with the fill {removal.describe()!r}, "
            "whose draws would all be the same; use n_samples=1 or fill='noise'."
        )
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    regions = unit_regions(unit, x)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)
        ranks, units = _ranked(prepared, regions, rank_by, seed)
        bounds, count = _group_bounds(units, steps, owner)
        draws = (
            [removal]
            if not random_fill
            else [dataclasses.replace(removal, seed=seed + draw) for draw in range(n_samples)]
        )
        substrates = torch.stack([draw.substrate(x) for draw in draws])
        height, width = x.shape[-2:]

        def removed(samples: Tensor, indices: Tensor) -> Tensor:
            group = (indices - 1).clamp_min(0) // n_samples
            draw = (indices - 1).clamp_min(0) % n_samples
            rank = ranks[samples]
            inside = (rank >= bounds[samples, group][:, None]) & (
                rank < bounds[samples, group + 1][:, None]
            )
            keep = (~inside | (indices == 0)[:, None]).view(-1, 1, height, width)
            return torch.lerp(substrates[draw, samples], x[samples], keep.to(x.dtype))

        scores = wrapped.score_rows(
            x.shape[0],
            count * n_samples + 1,
            removed,
            resolved,
            activation=activation,
            device=x.device,
        )
        flat = ranking_map(prepared.attributions, rank_by).flatten(1).double()
        group_of = torch.searchsorted(bounds[:, 1:].contiguous(), ranks, right=True)
        mass = torch.zeros(x.shape[0], count, dtype=torch.float64, device=x.device)
        mass.scatter_add_(1, group_of.clamp_max(count - 1), flat)
    changes = (scores[:, 1:] - scores[:, :1]).double().view(x.shape[0], count, n_samples)
    values = correlate(mass, changes.pow(2).mean(2), "spearman")
    home = prepared.home
    return MetricResult(
        metric=owner,
        values=values.to(home),
        higher_is_better=True,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "steps": count,
            "unit": describe_unit(regions),
            "fill": removal.describe(),
            "n_samples": n_samples,
            "rank_by": rank_by,
            "correlation": "spearman",
            "activation": activation,
            "target": prepared.rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )
