"""Subset selection (SMDL and its LiMA preset): regions, the objective, the search, the outputs.

:func:`select_regions` is the engine they share with VPS (:mod:`faithmap.methods.vps`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal, NamedTuple, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, InstanceOf, Interval, options
from faithmap.core.method import Attribution, Method
from faithmap.core.model import Model
from faithmap.core.regions import REGIONS, Regions, RegionsLike, make_regions
from faithmap.core.removal import FILL, FillSpec, make_removal
from faithmap.core.targets import Target
from faithmap.methods.subset.evaluator import Confidence, SubsetScores
from faithmap.methods.subset.objectives import Objective, Weights

Rank = Callable[[Objective, int, int, torch.device], Tensor]
"""A search: ``rank(objective, n, count, device)`` gives the order ``(N, R)`` it finds."""


@dataclass(frozen=True, kw_only=True)
class SubsetSelection(Method):
    """Rank regions by greedy maximisation of a set objective (the base of SMDL).

    The explanation holds the region ranking ``(N, R)``; the rank map (each pixel gets
    ``R_i - rank`` of its region, ``R_i`` the image's non-empty regions, so the first region is
    the hottest); and the curves recorded during the search, ``(N, R + 1)`` each: ``insertion``
    (target probability of the image keeping the first ``m`` regions), ``deletion`` (keeping all
    but them) and ``area`` (the fraction of pixels in the first ``m`` regions). Regions an image
    does not use (SLIC may give fewer segments than asked) are ranked last.
    """

    image_only = True
    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "fill": FILL,
        "complement_fill": [*FILL, None],
        "consistency": [Interval(float, 0.0)],
        "collaboration": [Interval(float, 0.0)],
        "confidence": [Interval(float, 0.0)],
        "effectiveness": [Interval(float, 0.0)],
        "confidence_form": [options(get_args(Confidence))],
        "embedding": [InstanceOf((str,), "a layer name (str)"), None],
    }

    regions: RegionsLike = "slic:49"
    fill: FillSpec = 0.0
    complement_fill: FillSpec | None = None
    consistency: float = 1.0
    collaboration: float = 1.0
    confidence: float = 1.0
    effectiveness: float = 0.0
    confidence_form: Confidence = "entropy"
    embedding: str | None = None

    def check(self) -> None:
        self.weights()  # at least one weight must be > 0

    def weights(self) -> Weights:
        """The objective's weights (validated)."""
        return Weights(self.consistency, self.collaboration, self.confidence, self.effectiveness)

    @abstractmethod
    def rank(self, objective: Objective, n: int, count: int, device: torch.device) -> Tensor:
        """The region order ``(N, R)`` that the method's search finds."""

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Attribution:
        found = select_regions(
            model,
            inputs,
            target,
            regions=self.regions,
            fill=self.fill,
            complement_fill=self.complement_fill,
            weights=self.weights(),
            rank=self.rank,
            confidence=self.confidence_form,
            embedding=self.embedding if self.effectiveness else False,
        )
        order = found.order
        count = order.shape[1]
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(count, device=order.device).expand_as(order)
        )
        used = found.nonempty.sum(1, keepdim=True)
        values = (used - ranks).clamp_min(0).to(inputs.dtype)
        return Attribution(
            found.regions.paint(values).to(inputs.dtype), ranking=order, curves=found.curves
        )


class Selection(NamedTuple):
    """What a subset search found: the order ``(N, R)`` (regions an image does not use last),
    the curves recorded along it (see :meth:`Objective.curves`), the regions and which of them
    each image uses ``(N, R)``."""

    order: Tensor
    curves: dict[str, Tensor]
    regions: Regions
    nonempty: Tensor


def select_regions(
    model: Model,
    inputs: Tensor,
    target: Target,
    *,
    regions: RegionsLike,
    fill: FillSpec,
    complement_fill: FillSpec | None,
    weights: Weights,
    rank: Rank,
    confidence: Confidence = "entropy",
    embedding: str | Literal[False] | None = False,
) -> Selection:
    """Order each image's regions by ``rank`` on the objective of ``weights``, and record the
    curves of that order; the engine SMDL, LiMA and VPS share."""
    made = make_regions(regions, inputs)
    scores = SubsetScores(
        model,
        inputs,
        target,
        make_removal(fill).substrate(inputs),
        made,
        confidence=confidence,
        embedding=embedding,
        complement_substrate=(
            None
            if complement_fill in (None, fill)
            else make_removal(complement_fill).substrate(inputs)
        ),
    )
    objective = Objective(scores, weights)
    found = rank(objective, inputs.shape[0], made.count, inputs.device)
    empty_last = (~scores.nonempty.gather(1, found)).int().sort(dim=1, stable=True).indices
    order = found.gather(1, empty_last)
    return Selection(order, objective.curves(order), made, scores.nonempty)
