"""Fidelity metrics: do the attributions predict what removing features does to the output?

* :func:`faithfulness_correlation` (Bhatt et al. 2020; Xplique's MuFidelity): the correlation,
  over random subsets ``S`` of features, between the attribution mass of ``S`` and the drop of
  the target score when ``S`` is removed.
* :func:`faithfulness_estimate` (Alvarez-Melis & Jaakkola 2018): the correlation, over the
  features, between each feature's attribution and the drop when it alone is removed.

Every random draw is a pure function of (seed, sample, draw, element) (:mod:`.draws`), so a
value does not depend on the model's batch size. The unperturbed input is scored in the same
batches as the perturbed ones. :func:`faithmap.metrics.infidelity` lives in its own module.

References
----------
Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020.
Alvarez-Melis, Jaakkola, "Towards Robust Interpretability with Self-Explaining
Neural Networks", NeurIPS 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Interval, options
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, check_map_shape, prepare
from faithmap.core.model import Model, ModelLike
from faithmap.core.ordering import UnitLike, describe_unit, unit_regions
from faithmap.core.readout import Activation
from faithmap.core.regions import UNIT, Regions
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, blend, make_removal
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError
from faithmap.metrics.draws import key_table, row_subsets
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS

Correlation = Literal["pearson", "spearman"]


def average_ranks(values: Tensor) -> Tensor:
    """Ranks along the last axis, ties sharing their average rank (as scipy's rankdata)."""
    ordered = values.sort(-1).values.contiguous()
    low = torch.searchsorted(ordered, values.contiguous(), right=False)
    high = torch.searchsorted(ordered, values.contiguous(), right=True)
    return (low + high - 1).to(torch.float64) / 2


def correlate(a: Tensor, b: Tensor, kind: str, valid: Tensor | None = None) -> Tensor:
    """Row-wise Pearson or Spearman correlation of ``(N, M)`` tensors; NaN when a row is constant.

    ``valid`` ``(N, M)`` marks the entries that count (others are ignored). A row counts as
    constant when its spread is below ``1e-9`` of its magnitude (float rounding).
    """
    a, b = a.double(), b.double()
    if valid is None:
        valid = torch.ones_like(a, dtype=torch.bool)
    if kind == "spearman":
        # invalid entries are pushed past every valid one so they do not shift the ranks
        a = average_ranks(a.masked_fill(~valid, torch.inf))
        b = average_ranks(b.masked_fill(~valid, torch.inf))
    count = valid.double().sum(1, keepdim=True)
    a, b = torch.where(valid, a, 0), torch.where(valid, b, 0)
    centred_a = torch.where(valid, a - a.sum(1, keepdim=True) / count, 0)
    centred_b = torch.where(valid, b - b.sum(1, keepdim=True) / count, 0)
    spread_a, spread_b = centred_a.norm(dim=1), centred_b.norm(dim=1)
    constant = (spread_a <= 1e-9 * a.norm(dim=1)) | (spread_b <= 1e-9 * b.norm(dim=1))
    result = (centred_a * centred_b).sum(1) / (spread_a * spread_b)
    return torch.where(constant, torch.nan, result)


def _replace_pixels(
    x: Tensor, substrate: Tensor, samples: Tensor, pixels: Tensor, clean: Tensor
) -> Tensor:
    """Rows ``x[samples]`` with the ``(B, K)`` flat ``pixels`` (all channels) from ``substrate``.

    Rows marked ``clean`` ``(B, 1)`` stay as they are. Touches ``K`` pixels per row instead of
    blending whole images, which matters when few pixels are removed.
    """
    rows = x.index_select(0, samples)
    flat = rows.view(rows.shape[0], rows.shape[1], -1)
    positions = pixels[:, None, :].expand(-1, rows.shape[1], -1)
    planes = samples[:, None] * rows.shape[1] + torch.arange(rows.shape[1], device=x.device)
    values = substrate.take(planes[:, :, None] * flat.shape[2] + positions)
    values = torch.where(clean[:, :, None], flat.gather(2, positions), values)
    flat.scatter_(2, positions, values)
    return rows


def units_per_image(owner: str, regions: Regions) -> Tensor:
    """The units each image has, ``(N,)``, after checking that every image has at least 2.

    A metric that removes random subsets of an image's units (faithfulness correlation,
    sensitivity-n) needs a unit kept and a unit removed.
    """
    units = (regions.sizes() > 0).sum(1)
    fewest = int(units.min())
    if fewest < 2:
        raise InvalidParameterError(
            f"{owner} removes a subset of the units of each image, so it needs images of at "
            f"least 2 units. Got an image of {fewest} {describe_unit(regions)} unit; use a "
            "finer 'unit' (unit='pixel', or 'patches:K' with a smaller K)."
        )
    return units


def _region_scores(
    owner: str,
    wrapped: Model,
    x: Tensor,
    attributions: Tensor,
    target: TargetLike,
    regions: Regions,
    removal: Removal,
    per_sample: int,
    removed_units: Callable[[Tensor, Tensor, Tensor], Tensor],
    activation: Activation,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, str]:
    """Scores of the clean input (index 0) and ``per_sample - 1`` inputs with units removed.

    ``removed_units(samples, indices, present)`` gives the ``(B, K)`` positions of the units
    removed in draws ``indices - 1`` (any values where ``indices`` is 0). Returns the scores
    ``(N, per_sample)``, the attribution mass removed at each point ``(N, per_sample)``, the
    units present ``(N, R)``, the target classes and the unit.
    """
    check_map_shape(attributions, x, owner)
    mass = regions.pool(attributions.detach().to(x.device).float()) * regions.sizes()
    present = regions.sizes() > 0
    removed_mass = torch.zeros(x.shape[0], per_sample, dtype=torch.float64, device=x.device)
    substrate = removal.substrate(x)
    resolved = wrapped.target(x, target)

    def rows(samples: Tensor, indices: Tensor) -> Tensor:
        chosen = removed_units(samples, indices, present[samples])
        clean = (indices == 0)[:, None]
        taken = mass[samples].gather(1, chosen).masked_fill_(clean, 0)
        removed_mass[samples, indices] = taken.double().sum(1)
        if regions.kind == "pixels":
            return _replace_pixels(x, substrate, samples, chosen, clean)
        keep = torch.ones(chosen.shape[0], regions.count, dtype=x.dtype, device=x.device)
        keep.scatter_(1, chosen, 0).masked_fill_(clean, 1)
        return blend(x[samples], substrate[samples], regions.to_pixels(keep, samples))

    scores = wrapped.score_rows(
        x.shape[0], per_sample, rows, resolved, activation=activation, device=x.device
    )
    return scores, removed_mass, present, resolved.classes, describe_unit(regions)


@register_metric(
    "faithfulness_correlation",
    constraints={
        **REMOVAL_CONSTRAINTS,
        "subset_size": [None, Interval(int, 1)],
        "n_samples": [Interval(int, 2)],
        "unit": UNIT,
        "correlation": [options(("pearson", "spearman"))],
        "seed": [SEED],
    },
    higher_is_better=True,
    constant_model=math.nan,
)
def faithfulness_correlation(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    subset_size: int | None = None,
    n_samples: int = 100,
    unit: UnitLike = "pixel",
    fill: FillLike | Removal = 0.0,
    correlation: Correlation = "pearson",
    activation: Activation = "logits",
    seed: int = 0,
) -> MetricResult:
    """Correlation between the attribution of random feature subsets and the drop they cause.

    For ``n_samples`` random subsets ``S`` of ``subset_size`` units, the value is the
    correlation of ``sum(phi[S])`` with ``f(x) - f(x with S filled)``. Higher is better, in
    [-1, 1]; NaN where it is undefined (constant attributions, or a model whose output the
    subsets do not change, such as one that ignores its input).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    subset_size : int or None, default=None
        Units per subset (Quantus: 224 features; it draws single channel values, faithmap
        draws whole pixels or regions). ``None`` scales it to the images:
        ``min(224, max(1, units // 5))`` with ``units`` the fewest units of an image, that is
        Quantus' 224 from 1,120 units up (224 at 64x64 and 48x192 pixels) and Xplique's fifth of
        the units below (12 of the 64 pixels of an 8x8 image); ``choices`` records the size used.
    n_samples : int, default=100
        Subsets per sample (Quantus: 100; Xplique: 200).
    unit : str, Regions or Tensor, default="pixel"
        ``"pixel"``, ``"patches:K"`` (Xplique's grid cells), ``"slic:K"``, ...
    fill : str, float, callable or Removal, default=0.0
        What removed units become.
    correlation : {"pearson", "spearman"}, default="pearson"
        Pearson as Bhatt et al., Spearman as Xplique's MuFidelity (which turns NaN into 0).
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    Returns
    -------
    MetricResult
        Cost: ``n_samples + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations",
    IJCAI 2020.
    """
    owner = "faithfulness_correlation"
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, checked, x = prepared.model, prepared.inputs, prepared.x
    attributions, target, rule = prepared.attributions, prepared.target, prepared.rule
    with wrapped.ledger.track() as tracker:
        regions = unit_regions(unit, x)
        units = units_per_image(owner, regions)
        fewest = int(units.min())
        everywhere = bool((regions.sizes() > 0).all())
        keys = key_table(seed, x.shape[0], n_samples + 1, x.device)
        if subset_size is None:
            subset_size = min(224, max(1, fewest // 5))
        if subset_size >= fewest:
            raise InvalidParameterError(
                f"The 'subset_size' parameter of {owner} must be smaller than the number of "
                f"units of every image ({fewest}). Got {subset_size} instead; use "
                f"subset_size={max(1, fewest // 5)}, or subset_size=None to scale it to the "
                "images."
            )
        size = subset_size

        def subsets(samples: Tensor, indices: Tensor, present: Tensor) -> Tensor:
            chosen = None if everywhere else present
            return row_subsets(keys[samples, indices], chosen, size, regions.count)

        scores, removed_mass, _, classes, unit_name = _region_scores(
            owner,
            wrapped,
            x,
            attributions,
            target,
            regions,
            removal,
            n_samples + 1,
            subsets,
            activation,
        )
    drops = scores[:, :1] - scores[:, 1:]
    values = correlate(removed_mass[:, 1:], drops, correlation)
    home = checked.device
    return MetricResult(
        metric=owner,
        values=values.to(home),
        higher_is_better=True,
        target=None if classes is None else classes.to(home),
        choices={
            "subset_size": subset_size,
            "n_samples": n_samples,
            "unit": unit_name,
            "fill": removal.describe(),
            "correlation": correlation,
            "activation": activation,
            "target": rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )


@register_metric(
    "faithfulness_estimate",
    constraints={**REMOVAL_CONSTRAINTS, "unit": UNIT},
    higher_is_better=True,
    constant_model=math.nan,
)
def faithfulness_estimate(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    unit: UnitLike = "pixel",
    fill: FillLike | Removal = 0.0,
    activation: Activation = "logits",
) -> MetricResult:
    """Pearson correlation between each unit's attribution and the drop when it alone is removed.

    Higher is better, in [-1, 1]; NaN where undefined (constant attributions, or a model whose
    output no single removal changes).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed; a region's attribution is its sum).
    target : None, int, tensor or callable
    unit : str, Regions or Tensor, default="pixel"
        The features removed one at a time: pixels (all channels), ``"patches:K"``, ``"slic:K"``.
    fill : str, float, callable or Removal, default=0.0
    activation : {"logits", "softmax"}, default="logits"

    Returns
    -------
    MetricResult
        Cost: ``units + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Alvarez-Melis, Jaakkola, "Towards Robust Interpretability with Self-Explaining Neural
    Networks", NeurIPS 2018.
    """
    owner = "faithfulness_estimate"
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, checked, x = prepared.model, prepared.inputs, prepared.x
    attributions, target, rule = prepared.attributions, prepared.target, prepared.rule
    regions = unit_regions(unit, x)
    with wrapped.ledger.track() as tracker:

        def single(samples: Tensor, indices: Tensor, present: Tensor) -> Tensor:
            return (indices - 1).clamp_min(0)[:, None]

        scores, removed_mass, present, classes, unit_name = _region_scores(
            owner,
            wrapped,
            x,
            attributions,
            target,
            regions,
            removal,
            regions.count + 1,
            single,
            activation,
        )
    drops = scores[:, :1] - scores[:, 1:]
    values = correlate(removed_mass[:, 1:], drops, "pearson", present)
    home = checked.device
    return MetricResult(
        metric=owner,
        values=values.to(home),
        higher_is_better=True,
        target=None if classes is None else classes.to(home),
        choices={
            "unit": unit_name,
            "fill": removal.describe(),
            "correlation": "pearson",
            "activation": activation,
            "target": rule,
        },
        cost=tracker.cost,
    )
