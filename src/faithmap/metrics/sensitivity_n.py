"""Sensitivity-n (Ancona et al. 2018): do attributions of any n features sum to the effect of
removing them?

For each subset size ``n`` (a fraction of the image's units), ``n_samples`` random subsets
``S`` of ``n`` units are removed; the value at ``n`` is the Pearson correlation, over the
subsets, between ``sum(a[S])`` and ``f(x) - f(x with S filled)``. A method satisfies
sensitivity-n when the two are equal for every subset (correlation 1). Subsets are drawn by
the counter-based generator of :mod:`~faithmap.metrics.draws`, so a value does not depend on
the model's batch size.

References
----------
Ancona, Ceolini, Öztireli, Gross, "Towards Better Understanding of Gradient-based Attribution
Methods for Deep Neural Networks", ICLR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Interval, Satisfies
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import ModelLike
from faithmap.core.ordering import UnitLike, describe_unit, unit_regions
from faithmap.core.readout import Activation
from faithmap.core.regions import UNIT
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, blend, make_removal
from faithmap.core.targets import TargetLike
from faithmap.metrics.draws import key_table, row_bits
from faithmap.metrics.fidelity import correlate, units_per_image
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS

FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
"""Subset sizes as fractions of the units: log-spaced up to 80 % (Ancona et al.'s range; Quantus'
``n_max_percentage=0.8``)."""


def _is_fractions(value: Any) -> bool:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) == 0:
        return False
    return all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 1 for v in value)


@dataclass(frozen=True, kw_only=True)
class SensitivityNResult(MetricResult):
    """Sensitivity-n at each subset size; ``values`` is their mean (NaN ignored).

    Attributes
    ----------
    correlations : Tensor
        ``(N, F)`` the correlation at each size (NaN where undefined).
    fractions : Tensor
        ``(F,)`` the sizes, as fractions of the units.
    sizes : Tensor
        ``(N, F)`` the subset sizes in units.
    """

    correlations: Tensor
    fractions: Tensor
    sizes: Tensor


@register_metric(
    "sensitivity_n",
    constraints={
        **REMOVAL_CONSTRAINTS,
        "fractions": [
            Satisfies(_is_fractions, "a non-empty sequence of numbers in (0, 1]", invalid=(0.0,))
        ],
        "n_samples": [Interval(int, 2)],
        "unit": UNIT,
        "seed": [SEED],
    },
    higher_is_better=True,
    constant_model=math.nan,
)
def sensitivity_n(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fractions: Sequence[float] = FRACTIONS,
    n_samples: int = 100,
    unit: UnitLike = "pixel",
    fill: FillLike | Removal = 0.0,
    activation: Activation = "logits",
    seed: int = 0,
) -> SensitivityNResult:
    """Correlation between the attribution of random n-unit subsets and the drop they cause.

    Higher is better, in [-1, 1] at each size; ``values`` is the mean over the sizes. NaN
    where undefined (constant attributions, or a model whose output no subset changes).

    Differences from Quantus 0.6.0: Quantus' ``SensitivityN`` measures something else. It
    removes features cumulatively in descending attribution order, and at step ``n``
    correlates, *across the images of the first batch*, the drop after ``n`` steps with the
    attribution of the ``n``-th step's features alone; it returns one number per step, not per
    image. faithmap follows Ancona et al.: per image, over random subsets of each size.
    Quantus' default output is the softmax, Ancona et al.'s (and faithmap's) the logit.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed; a region's attribution is its sum).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    fractions : sequence of float, default=(0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)
        Subset sizes as fractions of each image's units, ``n = max(1, round(f * units))``.
    n_samples : int, default=100
        Subsets drawn per size.
    unit : str, Regions or Tensor, default="pixel"
    fill : str, float, callable or Removal, default=0.0
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    Returns
    -------
    SensitivityNResult
        Cost: ``len(fractions) * n_samples + 1`` forward passes per sample (plus target
        resolution).

    References
    ----------
    Ancona, Ceolini, Öztireli, Gross, "Towards Better Understanding of Gradient-based
    Attribution Methods for Deep Neural Networks", ICLR 2018.
    """
    owner = "sensitivity_n"
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    regions = unit_regions(unit, x)
    present = regions.sizes() > 0
    units = units_per_image(owner, regions)
    shares = torch.tensor([float(f) for f in fractions], dtype=torch.float64, device=x.device)
    sizes = torch.round(shares[None, :] * units[:, None].double()).long().clamp_min(1)
    per_sample = len(fractions) * n_samples + 1
    mass = regions.pool(prepared.attributions) * regions.sizes()
    removed_mass = torch.zeros(x.shape[0], per_sample, dtype=torch.float64, device=x.device)
    keys = key_table(seed, x.shape[0], per_sample, x.device)
    last = torch.iinfo(torch.int32).max
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)
        substrate = removal.substrate(x)

        def rows(samples: Tensor, indices: Tensor) -> Tensor:
            draws = row_bits(keys[samples, indices], regions.count).clamp_max_(last - 1)
            draws.masked_fill_(~present[samples], last)
            order = draws.argsort(dim=1, stable=True)
            rank = torch.empty_like(order).scatter_(
                1, order, torch.arange(regions.count, device=x.device).expand_as(order)
            )
            size = sizes[samples, ((indices - 1).clamp_min(0) // n_samples)]
            removed = (rank < size[:, None]) & (indices > 0)[:, None]
            removed_mass[samples, indices] = torch.where(removed, mass[samples], 0).double().sum(1)
            keep = (~removed).to(x.dtype)
            return blend(x[samples], substrate[samples], regions.to_pixels(keep, samples))

        scores = wrapped.score_rows(
            x.shape[0], per_sample, rows, resolved, activation=activation, device=x.device
        )
    drops = (scores[:, :1] - scores[:, 1:]).double().view(-1, n_samples)
    grouped = removed_mass[:, 1:].reshape(-1, n_samples)
    correlations = correlate(grouped, drops, "pearson").view(x.shape[0], len(fractions))
    home = prepared.home
    return SensitivityNResult(
        metric=owner,
        values=correlations.nanmean(1).to(home),
        correlations=correlations.to(home),
        fractions=shares.to(home),
        sizes=sizes.to(home),
        higher_is_better=True,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "fractions": tuple(float(f) for f in fractions),
            "n_samples": n_samples,
            "unit": describe_unit(regions),
            "fill": removal.describe(),
            "correlation": "pearson",
            "activation": activation,
            "target": prepared.rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )
