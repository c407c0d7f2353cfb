"""Region-removal curves: IROF and Selectivity.

Both remove whole regions cumulatively, most relevant first, and score the target after each
removal: point ``k`` of the curve is the image with its ``k`` most relevant regions filled,
from ``k = 0`` (the image itself) to every region filled, on x = k / R (``R`` the image's
regions). Areas follow the trapezoid rule on x in [0, 1], as :mod:`~faithmap.metrics.curves`.

* :func:`selectivity` (Montavon et al. 2018; Quantus ``Selectivity``): square patches ranked
  by their attribution sum; the area under the score curve, lower is better.
* :func:`irof` (Rieger & Hansen 2020; Quantus ``IROF``): superpixels ranked by their mean
  attribution; the area *over* the curve of scores relative to the clean score, higher is
  better.

References
----------
Montavon, Samek, Müller, "Methods for Interpreting and Understanding Deep Neural Networks",
Digital Signal Processing 73, 2018.
Rieger, Hansen, "IROF: a Low Resource Evaluation Metric for Explanation Methods", ICLR 2020
workshop (arXiv 2003.08747).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import ModelLike
from faithmap.core.ordering import UnitLike, describe_unit, unit_ranks, unit_regions
from faithmap.core.readout import Activation
from faithmap.core.regions import UNIT
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, make_removal
from faithmap.core.targets import TargetLike
from faithmap.metrics.curves import ranked_curve
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS


@dataclass(frozen=True, kw_only=True)
class RegionCurveResult(MetricResult):
    """A region-removal metric with its curve.

    Attributes
    ----------
    curve : Tensor
        ``(N, R + 1)`` target scores with ``k`` regions removed at point ``k`` (``R`` the most
        regions of an image; an image with fewer repeats its last point).
    regions : Tensor
        ``(N,)`` the regions of each image.
    """

    curve: Tensor
    regions: Tensor


def _region_curve(
    owner: str,
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike,
    unit: UnitLike,
    fill: FillLike | Removal,
    by_sum: bool,
    activation: Activation,
    seed: int,
    higher_is_better: bool,
    value: Callable[[Tensor, Tensor], Tensor],
) -> RegionCurveResult:
    """Remove each image's regions one at a time, most relevant first, and score the curve.

    Regions are ranked by their mean attribution, or their sum with ``by_sum``; the value of
    each image is ``value(curve, regions)`` for its curve ``(N, R + 1)``.
    """
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    regions = unit_regions(unit, x)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)
        per_region = regions.pool(prepared.attributions)
        if by_sum:
            per_region = per_region * regions.sizes()
        ranks, units = unit_ranks(regions.paint(per_region), regions, "morf", seed)
        removed = torch.arange(int(units.max()) + 1, device=x.device).expand(x.shape[0], -1)
        curve = ranked_curve(
            wrapped,
            x,
            resolved,
            removal.substrate(x),
            ranks,
            removed,
            insert=False,
            activation=activation,
        )
    home = prepared.home
    return RegionCurveResult(
        metric=owner,
        values=value(curve, units).to(home),
        curve=curve.to(home),
        regions=units.to(home),
        higher_is_better=higher_is_better,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "unit": describe_unit(regions),
            "fill": removal.describe(),
            "activation": activation,
            "target": prepared.rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )


def region_auc(curve: Tensor, units: Tensor) -> Tensor:
    """Trapezoid area of each curve's first ``units + 1`` points on x = k / units, ``(N,)``."""
    points = torch.arange(curve.shape[1], device=curve.device)
    inside = points[None, :] <= units[:, None]
    last = curve.gather(1, units[:, None]).squeeze(1)
    total = torch.where(inside, curve, 0).sum(1) - curve[:, 0] / 2 - last / 2
    return total / units.to(curve.dtype)


def _area_over_relative_curve(curve: Tensor, units: Tensor) -> Tensor:
    """IROF's value: ``1 -`` the area under ``f(x_k) / f(x)``, NaN where ``f(x) <= 0``."""
    clean = curve[:, :1]
    return 1 - region_auc(curve / clean.where(clean > 0, torch.nan), units)


REGION_CONSTRAINTS: Constraints = {**REMOVAL_CONSTRAINTS, "unit": UNIT, "seed": [SEED]}


@register_metric(
    "selectivity",
    constraints=REGION_CONSTRAINTS,
    higher_is_better=False,
    constant_model="score",
)
def selectivity(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    unit: UnitLike = "patches:8",
    fill: FillLike | Removal = 0.0,
    activation: Activation = "softmax",
    seed: int = 0,
) -> RegionCurveResult:
    """Area under the target score as patches are removed, highest attribution sum first.

    Lower is better: a selective explanation makes the score fall fast. A model that ignores
    its input gives its constant score.

    Differences from Quantus 0.6.0: Quantus returns the curve without its first point
    (after the first removal onwards) and its area ``np.trapz(curve, dx=1)``, unnormalised;
    faithmap's curve starts at the clean image and its area is on x in [0, 1]. Quantus' curve
    is ``curve[:, 1:]`` of faithmap's where the images' sides are multiples of the patch size
    and the fill is the same: otherwise Quantus pads the image (centred) to whole patches while
    faithmap's border patches are smaller. Quantus' ``"black"`` fill is each image's minimum;
    faithmap's default is the constant 0. Quantus ranks patches by the sum over channel values,
    faithmap by the sum of the channel-summed map (the same order).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed; a region ranked by its sum).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    unit : str, Regions or Tensor, default="patches:8"
        The regions removed (Quantus: ``patch_size=8``).
    fill : str, float, callable or Removal, default=0.0
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0
        Seed of the tie-break between regions of equal attribution.

    Returns
    -------
    RegionCurveResult
        Cost: ``R + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Montavon, Samek, Müller, "Methods for Interpreting and Understanding Deep Neural
    Networks", Digital Signal Processing 73, 2018.
    """
    return _region_curve(
        "selectivity",
        model,
        inputs,
        explanation,
        target=target,
        unit=unit,
        fill=fill,
        by_sum=True,
        activation=activation,
        seed=seed,
        higher_is_better=False,
        value=region_auc,
    )


@register_metric(
    "irof",
    constraints=REGION_CONSTRAINTS,
    higher_is_better=True,
    constant_model=0.0,
)
def irof(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    unit: UnitLike = "slic:100",
    fill: FillLike | Removal = "mean",
    activation: Activation = "softmax",
    seed: int = 0,
) -> RegionCurveResult:
    """Iterative removal of features: area over the relative score curve, superpixels first.

    Superpixels are removed most relevant (highest mean attribution) first; the curve is the
    target score relative to the clean score, ``f(x_k) / f(x)``, and the value is ``1 -`` its
    trapezoid area on x in [0, 1]. Higher is better; NaN where the clean score is not positive
    (use ``activation="softmax"``). A model that ignores its input gives 0.

    Differences from Quantus 0.6.0: Quantus returns ``R - np.trapz(f(x_k) / f(x), dx=1)`` over
    ``k = 1..R`` (the relative curve without its first point, unnormalised), that is
    ``R * value + (1 + f(x_1) / f(x)) / 2`` in faithmap's terms; for a batch of images with
    different numbers of superpixels it pads the shorter curves with zeros inside the same
    area. Its ``"mean"`` fill is the mean over the *whole batch* of the image as perturbed so
    far (so a value depends on the other images and moves as regions are removed); faithmap's
    ``"mean"`` is each image's own per-channel mean. Quantus segments with scikit-image's SLIC
    defaults (100 segments, compactness 10); faithmap's ``"slic:100"`` uses compactness 30 and
    sigma 1 (pass a label map as ``unit`` to use any segmentation).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed; a region ranked by its mean).
    target : None, int, tensor or callable
    unit : str, Regions or Tensor, default="slic:100"
        The regions removed: superpixels, patches (``"patches:K"``) or a label map.
    fill : str, float, callable or Removal, default="mean"
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0

    Returns
    -------
    RegionCurveResult
        ``curve`` holds the raw scores (not divided by the clean score). Cost: ``R + 1``
        forward passes per sample (plus target resolution).

    References
    ----------
    Rieger, Hansen, "IROF: a Low Resource Evaluation Metric for Explanation Methods", ICLR
    2020 workshop (arXiv 2003.08747).
    """
    return _region_curve(
        "irof",
        model,
        inputs,
        explanation,
        target=target,
        unit=unit,
        fill=fill,
        by_sum=False,
        activation=activation,
        seed=seed,
        higher_is_better=True,
        value=_area_over_relative_curve,
    )
