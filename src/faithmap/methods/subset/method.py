"""Subset selection (SMDL and its LiMA preset): regions, the objective, the search, the outputs."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, InstanceOf, Interval, options
from faithmap.core.method import Attribution, Method
from faithmap.core.model import Model
from faithmap.core.regions import REGIONS, RegionsLike, make_regions
from faithmap.core.removal import FILL, FillSpec, make_removal
from faithmap.core.targets import Target
from faithmap.methods.subset.evaluator import Confidence, SubsetScores
from faithmap.methods.subset.objectives import Objective, Weights


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
        regions = make_regions(self.regions, inputs)
        scores = SubsetScores(
            model,
            inputs,
            target,
            make_removal(self.fill).substrate(inputs),
            regions,
            confidence=self.confidence_form,
            embedding=self.embedding if self.effectiveness else False,
            complement_substrate=(
                None
                if self.complement_fill in (None, self.fill)
                else make_removal(self.complement_fill).substrate(inputs)
            ),
        )
        objective = Objective(scores, self.weights())
        found = self.rank(objective, inputs.shape[0], regions.count, inputs.device)
        empty_last = (~scores.nonempty.gather(1, found)).int().sort(dim=1, stable=True).indices
        order = found.gather(1, empty_last)
        count = order.shape[1]
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(count, device=order.device).expand_as(order)
        )
        used = scores.nonempty.sum(1, keepdim=True)
        values = (used - ranks).clamp_min(0).to(inputs.dtype)
        return Attribution(
            regions.paint(values).to(inputs.dtype),
            ranking=order,
            curves=objective.curves(order),
        )
