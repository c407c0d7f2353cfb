"""Insertion and deletion: the causal metrics of RISE (Petsiuk et al. 2018).

Pixels are ordered by decreasing attribution (channels summed, signed; ties broken by a seeded
random permutation). Deletion moves the most important pixels first from the image to the fill
(lower area is better); insertion moves them first from the fill to the image (higher is better).
The curve has ``steps + 1`` points on x = k / steps, both endpoints included, and its area is the
trapezoid rule, as in the reference code.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018. Defaults follow its batch protocol: 28 steps, softmax of the predicted class,
deletion to a constant, insertion from a blur (kernel 11, sigma 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.cost import Cost
from faithmap.errors import ShapeError
from faithmap.explanation import Explanation, attribution_map
from faithmap.methods.base import as_model
from faithmap.model import Activation, Model
from faithmap.removal import FillLike, Removal, make_removal, score_removals
from faithmap.targets import TargetLike
from faithmap.validation import check_choice, check_inputs, check_int


@dataclass(frozen=True)
class CurveResult:
    """A perturbation curve per sample and its area.

    Attributes
    ----------
    metric : str
        ``"insertion"`` or ``"deletion"``.
    curve : Tensor
        ``(N, steps + 1)`` target scores, from no pixel moved to all moved.
    fractions : Tensor
        ``(steps + 1,)`` fraction of pixels moved at each point.
    auc : Tensor
        ``(N,)`` trapezoid area under each curve on x in [0, 1].
    target : Tensor or None
        The class scored for each sample, ``None`` for a callable target.
    choices : dict
        Every choice that changes the number: fill, steps, seed, activation, target rule.
    cost : Cost
    """

    metric: str
    curve: Tensor
    fractions: Tensor
    auc: Tensor
    target: Tensor | None
    choices: dict[str, Any]
    cost: Cost

    @property
    def mean(self) -> float:
        """Mean area over the samples."""
        return float(self.auc.mean())

    @property
    def higher_is_better(self) -> bool:
        """Insertion: higher is better; deletion: lower is better."""
        return self.metric == "insertion"


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under curves ``(N, K + 1)`` sampled at x = k / K, by the trapezoid rule."""
    steps = curve.shape[1] - 1
    if steps == 0:
        return curve[:, 0].clone()
    return (curve.sum(1) - curve[:, 0] / 2 - curve[:, -1] / 2) / steps


def pixel_ranks(attributions: Tensor, seed: int) -> Tensor:
    """Rank of each pixel, 0 for the most important, ``(N, H * W)``; seeded random tie-break."""
    values = attributions.sum(1) if attributions.dim() == 4 else attributions
    values = values.flatten(1).float()
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(values.shape[1], generator=generator).to(values.device)
    order = shuffle[values[:, shuffle].sort(dim=1, descending=True, stable=True).indices]
    ranks = torch.empty_like(order)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def _curve(
    metric: str,
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike,
    fill: FillLike | Removal,
    steps: int,
    seed: int,
    activation: Activation,
) -> CurveResult:
    owner = metric
    check_int(steps, "steps", owner, low=1)
    check_int(seed, "seed", owner)
    check_choice(activation, "activation", owner, ("softmax", "logits"))
    wrapped = as_model(model)
    checked = check_inputs(inputs, owner, image=True)
    attributions = attribution_map(explanation)
    expected = (checked.shape[0], *checked.shape[2:])
    got = attributions.shape[0], *attributions.shape[-2:]
    if attributions.dim() not in (3, 4) or tuple(got) != expected:
        raise ShapeError(
            f"The attributions for {owner} must have shape (N, 1 or C, H, W) matching the inputs "
            f"{tuple(checked.shape)}. Got {tuple(attributions.shape)} instead."
        )
    removal = make_removal(fill)
    if target is None and isinstance(explanation, Explanation) and explanation.target is not None:
        target, rule = explanation.target, "explained"
    else:
        rule = "predicted" if target is None else "given"
    device = wrapped.device or checked.device
    x = checked.detach().to(device)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, target)
        ranks = pixel_ranks(attributions.detach().to(device), seed)
        pixels = ranks.shape[1]
        counts = torch.round(torch.linspace(0, pixels, steps + 1, device=device)).long()
        substrate = removal.substrate(x)
        height, width = x.shape[-2:]

        def keep(samples: Tensor, points: Tensor) -> Tensor:
            moved = ranks[samples] < counts[points][:, None]
            kept = ~moved if metric == "deletion" else moved
            return kept.view(-1, 1, height, width)

        curve = score_removals(
            wrapped, x, resolved, substrate, keep, steps + 1, activation=activation
        )
    return CurveResult(
        metric=metric,
        curve=curve.to(checked.device),
        fractions=(counts.float() / pixels).to(checked.device),
        auc=trapezoid_auc(curve).to(checked.device),
        target=None if resolved.classes is None else resolved.classes.to(checked.device),
        choices={
            "fill": removal.describe(),
            "steps": steps,
            "seed": seed,
            "activation": activation,
            "target": rule,
            "unit": "pixel",
        },
        cost=tracker.cost,
    )


def insertion(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = "blur",
    steps: int = 28,
    seed: int = 0,
    activation: Activation = "softmax",
) -> CurveResult:
    """Insertion curve and area: most important pixels inserted first into the fill.

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
        Seed of the tie-break between equal attributions.
    activation : {"softmax", "logits"}, default="softmax"

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
    )


def deletion(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = 0.0,
    steps: int = 28,
    seed: int = 0,
    activation: Activation = "softmax",
) -> CurveResult:
    """Deletion curve and area: most important pixels removed first (lower is better).

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
    )
