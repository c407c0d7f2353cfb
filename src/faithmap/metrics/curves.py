"""Insertion and deletion: the causal metrics of RISE (Petsiuk et al. 2018).

Features (``unit``: whole pixels, patches or superpixels) are ordered by attribution (channels
summed; a region by the mean attribution inside it; ties broken by a seeded random
permutation): most relevant first (``order="morf"``), least relevant first (``"lerf"``) or at
random (``"random"``, the control every method should beat). Deletion moves the features in that
order from the image to the fill (with MoRF, lower area is better); insertion moves them from the
fill to the image (higher is better). The curve has ``steps + 1`` points on x = k / steps, both
endpoints included, and its area is the trapezoid rule, as in the reference code.

Signed maps: "most relevant" means the most *positive* value (``rank_by="signed"``, the default,
as RISE's reference code and Quantus' default ``abs=False``), so a pixel that speaks against the
class (negative) moves last. Integrated Gradients, Input x Gradient and other signed methods then
insert their strongest negative evidence at the end; ``rank_by="absolute"`` ranks by ``|a|``
(the channel sum's magnitude, as Quantus' ``abs=True``) and measures where the evidence is
whatever its sign. The choice is recorded in ``choices["rank_by"]``.

Sharing passes: insertion and deletion with their default fills (blur, constant) perturb different
images, so no pass is shared. With the *same* fill, deletion in MoRF order at point k is the same
image as insertion in LeRF order at point ``steps - k`` (the same features are kept), so one of the
two curves can be read off the other instead of being scored again; the clean image (deletion's
first point, insertion's last) is also the pass that resolves a predicted target.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018. Defaults follow its batch protocol: 28 steps, softmax of the predicted class,
deletion to a constant, insertion from a blur (kernel 11, sigma 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, Interval, options
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import Model, ModelLike
from faithmap.core.ordering import ORDER, Order, UnitLike, describe_unit, unit_ranks, unit_regions
from faithmap.core.readout import Activation
from faithmap.core.regions import UNIT
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, make_removal, score_removals
from faithmap.core.targets import Target, TargetLike
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS

RankBy = Literal["signed", "absolute"]
"""How a map orders features: by its signed value (most positive first) or by its magnitude."""


@dataclass(frozen=True, kw_only=True)
class CurveResult(MetricResult):
    """A perturbation curve per sample; ``values`` is the area under each curve.

    Attributes
    ----------
    curve : Tensor
        ``(N, steps + 1)`` target scores, from no pixel moved to all moved.
    fractions : Tensor
        ``(steps + 1,)`` fraction of pixels moved at each point.

    The other attributes are those of :class:`MetricResult`; ``values`` is the ``(N,)``
    trapezoid area under each curve on x in [0, 1], also named ``auc``.
    """

    curve: Tensor
    fractions: Tensor

    @property
    def auc(self) -> Tensor:
        """``(N,)`` area under each curve (the same tensor as ``values``)."""
        return self.values


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under curves ``(N, K + 1)`` sampled at x = k / K, by the trapezoid rule."""
    steps = curve.shape[1] - 1
    if steps == 0:
        return curve[:, 0].clone()
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / steps


def ranking_map(attributions: Tensor, rank_by: RankBy) -> Tensor:
    """The map features are ranked by: channels summed (``(N, 1, H, W)`` for a 4-D map), or
    the magnitude of that sum with ``rank_by="absolute"``."""
    summed = attributions.sum(1, keepdim=True) if attributions.dim() == 4 else attributions
    return summed.abs() if rank_by == "absolute" else summed


def ranked_curve(
    model: Model,
    x: Tensor,
    target: Target,
    substrate: Tensor,
    ranks: Tensor,
    moved: Tensor,
    *,
    insert: bool,
    activation: Activation,
) -> Tensor:
    """Target scores ``(N, K)`` with each image's first ``moved[:, k]`` ranked units moved.

    ``ranks`` ``(N, H * W)`` is the rank of each pixel's unit (:func:`unit_ranks`); at point
    ``k`` the units ranked below ``moved[:, k]`` are inserted from ``x`` into the
    ``substrate`` (``insert``) or deleted from ``x`` to it. Every point of every image is
    scored in one stream through :func:`~faithmap.core.removal.score_removals`.
    """
    height, width = x.shape[-2:]

    def keep(samples: Tensor, points: Tensor) -> Tensor:
        moving = ranks[samples] < moved[samples, points][:, None]
        return (moving if insert else ~moving).view(-1, 1, height, width)

    return score_removals(model, x, target, substrate, keep, moved.shape[1], activation=activation)


def _curve(
    metric: str,
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike,
    fill: FillLike | Removal,
    steps: int,
    seed: int,
    activation: Activation,
    unit: UnitLike,
    order: Order,
    rank_by: RankBy,
) -> CurveResult:
    owner = metric
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, checked, x = prepared.model, prepared.inputs, prepared.x
    attributions, target, rule = prepared.attributions, prepared.target, prepared.rule
    removal = make_removal(fill)
    device = x.device
    regions = unit_regions(unit, x)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, target)
        ranked = ranking_map(attributions.detach().to(device), rank_by)
        ranks, units = unit_ranks(ranked, regions, order, seed)
        grid = torch.linspace(0, 1, steps + 1, device=device)
        counts = torch.round(grid[None, :] * units[:, None].double()).long()
        curve = ranked_curve(
            wrapped,
            x,
            resolved,
            removal.substrate(x),
            ranks,
            counts,
            insert=metric == "insertion",
            activation=activation,
        )
    return CurveResult(
        metric=metric,
        curve=curve.to(checked.device),
        fractions=grid.to(checked.device),
        values=trapezoid_auc(curve).to(checked.device),
        higher_is_better=(metric == "insertion") != (order == "lerf"),
        target=None if resolved.classes is None else resolved.classes.to(checked.device),
        choices={
            "fill": removal.describe(),
            "steps": steps,
            "seed": seed,
            "activation": activation,
            "target": rule,
            "unit": describe_unit(regions),
            "order": order,
            "rank_by": rank_by,
        },
        cost=tracker.cost,
    )


CURVE_CONSTRAINTS: Constraints = {
    **REMOVAL_CONSTRAINTS,
    "steps": [Interval(int, 1)],
    "seed": [SEED],
    "unit": UNIT,
    "order": [ORDER],
    "rank_by": [options(get_args(RankBy))],
}
"""The parameters insertion and deletion share."""


@register_metric(
    "insertion",
    constraints=CURVE_CONSTRAINTS,
    constant_model="score",
)
def insertion(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = "blur",
    steps: int = 28,
    seed: int = 0,
    activation: Activation = "softmax",
    unit: UnitLike = "pixel",
    order: Order = "morf",
    rank_by: RankBy = "signed",
) -> CurveResult:
    """Insertion curve and area: most important features inserted first into the fill.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    fill : str, float, callable or Removal, default="blur"
        The substrate pixels are inserted into (RISE: a Gaussian blur, kernel 11, sigma 5).
    steps : int, default=28
        Curve points minus one (``steps + 1`` forward passes per image).
    seed : int, default=0
        Seed of the tie-break between equal attributions (and of the ``"random"`` order).
    activation : {"softmax", "logits"}, default="softmax"
    unit : str, Regions or Tensor, default="pixel"
        What moves at once: whole pixels (all channels), or regions ``"patches:K"``,
        ``"slic:K"``, a :class:`~faithmap.Regions` or a label map, ranked by their mean
        attribution. With regions, ``fractions`` are fractions of the regions moved.
    order : {"morf", "lerf", "random"}, default="morf"
        Most relevant first, least relevant first, or a seeded random order.
    rank_by : {"signed", "absolute"}, default="signed"
        What "relevant" means: the most positive value (a signed map's negative evidence moves
        last), or the largest magnitude ``|a|`` of the channel sum, whatever its sign.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x = torch.rand(2, 1, 4, 4)
    >>> result = insertion(net, x, torch.rand(2, 1, 4, 4), steps=4, fill=0.0)
    >>> tuple(result.curve.shape), result.cost.forward
    ((2, 5), 12)
    """
    return _curve(
        "insertion",
        model,
        inputs,
        explanation,
        target=target,
        fill=fill,
        steps=steps,
        seed=seed,
        activation=activation,
        unit=unit,
        order=order,
        rank_by=rank_by,
    )


@register_metric(
    "deletion",
    constraints=CURVE_CONSTRAINTS,
    constant_model="score",
)
def deletion(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = 0.0,
    steps: int = 28,
    seed: int = 0,
    activation: Activation = "softmax",
    unit: UnitLike = "pixel",
    order: Order = "morf",
    rank_by: RankBy = "signed",
) -> CurveResult:
    """Deletion curve and area: most important features removed first (lower is better).

    Parameters are those of :func:`insertion`; the default fill is the constant 0 (RISE zeroes
    normalised inputs, which is the data set's mean colour; for inputs in [0, 1], black).
    """
    return _curve(
        "deletion",
        model,
        inputs,
        explanation,
        target=target,
        fill=fill,
        steps=steps,
        seed=seed,
        activation=activation,
        unit=unit,
        order=order,
        rank_by=rank_by,
    )
