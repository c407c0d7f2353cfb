"""Highest confidence: how high an explanation can raise the target within an area budget.

Meant for misclassified images explained for their true class: if the explanation found the
evidence for that class, keeping only its most important pixels should make the model confident
in it. For each budget ``p`` the score is the highest target probability along the insertion
path among the points that keep at most a fraction ``p`` of the image (the empty image, point 0,
excluded). Subset-selection explanations carry their own insertion curve, recorded on whole
regions with the true area of each prefix; that curve is used as it is (no model pass), as in
the papers. Other explanations are scored on a pixel insertion path of ``steps`` points
(:func:`~faithmap.metrics.curves.insertion`), keeping the first ``int(p * steps)`` points.

References
----------
Chen et al., "Less is More: Fewer Interpretable Region via Submodular Subset Selection",
ICLR 2024; Chen et al., "Less is More: Efficient Black-box Attribution via Minimal
Interpretable Subset Selection", 2025 ("highest confidence" on misclassified samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.model import Model
from faithmap.core.readout import Activation
from faithmap.core.removal import FillLike, Removal
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_float, check_int
from faithmap.metrics.curves import insertion


@dataclass(frozen=True)
class ConfidenceResult:
    """Highest target probability within each area budget.

    Attributes
    ----------
    highest : Tensor
        ``(N, B)`` highest target probability within each budget (NaN when no point fits).
    area : Tensor
        ``(N, B)`` fraction of the image kept at that highest point (the "retention").
    budgets : tuple of float
        The area budgets ``p``.
    recorded : bool
        Whether the explanation's recorded curve was used (no model pass).
    cost : Cost
    """

    highest: Tensor
    area: Tensor
    budgets: tuple[float, ...]
    recorded: bool
    cost: Cost

    @property
    def mean(self) -> Tensor:
        """``(B,)`` mean highest confidence over the samples, per budget."""
        return self.highest.nanmean(0)


def _highest(curve: Tensor, area: Tensor, allowed: Tensor) -> tuple[Tensor, Tensor]:
    """Max of ``curve`` ``(N, P)`` where ``allowed`` ``(N, P)``, and the area there."""
    masked = curve.double().masked_fill(~allowed, -math.inf)
    best = masked.argmax(1, keepdim=True)
    value = masked.gather(1, best).squeeze(1)
    value = torch.where(torch.isinf(value), torch.full_like(value, math.nan), value)
    return value, area.double().gather(1, best).squeeze(1)


def highest_confidence(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    budgets: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    fill: FillLike | Removal = 0.0,
    steps: int = 50,
    seed: int = 0,
    activation: Activation = "softmax",
) -> ConfidenceResult:
    """Highest target probability reached within 25/50/75/100 % of the image area.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        An explanation with recorded ``insertion`` and ``area`` curves (SMDL, LiMA) is read as
        it is (when ``target`` is ``None``); any other map is scored on a pixel insertion path.
    target : None, int, tensor or callable
        ``None``: the explanation's target (explain misclassified images for their true class).
        A given target is scored on the pixel insertion path.
    budgets : sequence of float, default=(0.25, 0.5, 0.75, 1.0)
        Area fractions in ``(0, 1]``.
    fill : str, float, callable or Removal, default=0.0
        The substrate of the pixel path (the papers: black).
    steps : int, default=50
        Points of the pixel path (50 in the papers' baseline evaluation).
    seed : int, default=0
        Tie-break seed of the pixel ranking.
    activation : {"softmax", "logits"}, default="softmax"
    """
    for budget in budgets:
        check_float(budget, "budgets", "highest_confidence", low=0.0, high=1.0, low_open=True)
    check_int(steps, "steps", "highest_confidence", low=1)
    chosen = tuple(float(b) for b in budgets)
    curves = explanation.curves if isinstance(explanation, Explanation) else {}
    recorded = "insertion" in curves and "area" in curves and target is None
    if recorded and activation == "softmax":
        curve, area = curves["insertion"][:, 1:], curves["area"][:, 1:]
        cost = Cost()
        allowed = [area <= budget + 1e-9 for budget in chosen]
    else:
        result = insertion(
            model,
            inputs,
            explanation,
            target=target,
            fill=fill,
            steps=steps,
            seed=seed,
            activation=activation,
        )
        curve = result.curve[:, 1:]
        area = result.fractions[1:].expand_as(curve)
        cost, recorded = result.cost, False
        index = torch.arange(1, steps + 1, device=curve.device).expand_as(curve)
        allowed = [index <= int(budget * steps) for budget in chosen]
    pairs = [_highest(curve, area, mask) for mask in allowed]
    return ConfidenceResult(
        highest=torch.stack([value for value, _ in pairs], 1),
        area=torch.stack([kept for _, kept in pairs], 1),
        budgets=chosen,
        recorded=recorded,
        cost=cost,
    )
