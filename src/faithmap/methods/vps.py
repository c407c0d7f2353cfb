"""VPS: Visual Precision Search, the regions that make a detector find one object.

VPS explains one detection (a reference box and class) by ordering image regions with plain
greedy search on ``F(S) = clue * s(S) + collaboration * (1 - s(V \\ S))``, where ``s`` is the
object's score on the image keeping only the regions ``S`` (the rest filled): the *clue* score
of ``S`` and one minus the score of its complement, the *collaboration* score. With a box target
(:class:`~faithmap.core.detection.BoxTarget`) ``s`` is ``max_q IoU(b_q, b) * score_q[c]`` over
the detector's predictions, the reference code's mode ``object``. The search is SMDL's engine
(:func:`~faithmap.methods.subset.method.select_regions`) with these two terms only.

References
----------
Chen, Liang, Li, Huang, Lin et al., "Interpreting Object-level Foundation Models via Visual
Precision Search", CVPR 2025.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, Interval, options
from faithmap.core.method import Attribution, Method
from faithmap.core.model import Model
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.subset.method import select_regions
from faithmap.methods.subset.objectives import Weights
from faithmap.methods.subset.search import SEARCHES, Search, run_search


def precision_map(
    curves: dict[str, Tensor], order: Tensor, clue: float, collaboration: float
) -> Tensor:
    """VPS's region values ``(N, R)`` from the curves recorded along ``order``.

    ``F`` at prefix ``m`` is ``clue * insertion[m] + collaboration * (1 - deletion[m])`` (prefix
    0: the filled image and the full image); the gain of the region placed at step ``m`` is
    ``g_m = F_m - F_{m-1}``. The reference code gives that region ``-sum_{j <= m} |g_j|`` and
    min-max normalises the map; here the region gets ``sum_{j > m} |g_j|``, the same map shifted
    so that the last region is 0 and not rescaled (the reference's map is this one divided by
    its maximum).
    """
    objective = clue * curves["insertion"] + collaboration * (1.0 - curves["deletion"])
    gains = objective.diff(dim=1).abs()
    still_to_come = gains.flip(1).cumsum(1).flip(1)
    by_rank = torch.cat([still_to_come[:, 1:], torch.zeros_like(gains[:, :1])], dim=1)
    return torch.empty_like(by_rank).scatter_(1, order, by_rank)


@register_method("vps")
@dataclass(frozen=True, kw_only=True)
class Vps(Method):
    """VPS attribution of one object: regions ranked by greedy clue + collaboration search.

    Explain a detection with a callable target that scores it on each row of the detector's
    raw outputs, such as :class:`~faithmap.core.detection.BoxTarget` (one per image with
    :func:`~faithmap.core.detection.box_targets`). A class target (a classifier) scores the
    class probability instead, which makes VPS SMDL's consistency and collaboration terms.

    The default search is the reference's plain greedy: each step scores every remaining
    region added to the chosen set ``S``, on the image keeping ``S`` and on the one keeping the
    rest. The reference makes ``R (R + 1)`` passes per image for ``R`` regions (4,160 at 64);
    faithmap scores no subset twice, and with one fill for both sides the last-but-one step's
    two subsets and two complements are images the first step already scored, so it makes
    ``R (R + 1) - 4`` (``R >= 3``; ``R (R + 1) + 2`` with a ``complement_fill`` of its own,
    the curves' two end points). The curves and the map come from those passes. The
    explanation holds the ranking ``(N, R)``, the curves recorded during the search ``(N, R +
    1)``: ``insertion`` (the object's score on the image keeping the first ``m`` regions),
    ``deletion`` (keeping all but them) and ``area`` (their pixel fraction), as the
    reference's evaluation reads them; and the map, the objective's change still to come
    after each region (:func:`precision_map`), so the first region is the hottest and, as in
    the reference, the last region that changes the score gets 0 like the regions after it.

    Parameters
    ----------
    regions : str or Regions, default="slic:64"
        The partition: the reference divides each image into 64 SLICO superpixels for correct
        COCO detections (100 for misclassified ones, 50 for missed ones and LVIS);
        ``"patches:K"`` or a :class:`~faithmap.Regions` also work.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What removed regions become: black, as the reference's MMDetection variant (its
        Grounding DINO variant zeroes the normalised image, the data set's mean colour: declare
        the normalisation on the :class:`~faithmap.Model` and give that colour's value).
    complement_fill : {"constant", "mean", "blur", "noise"}, float or None, default=None
        What the chosen regions become when the complement is scored; ``None``: ``fill``.
    clue, collaboration : float, default=1.0, 1.0
        ``lambda_1`` and ``lambda_2``, 1 in every script of the reference.
    search : {"greedy", "lazy", "stochastic", "bidirectional"}, default="greedy"
        The reference's plain greedy, or one of SMDL's faster searches
        (:class:`~faithmap.methods.subset.smdl.Smdl`): LiMA's bidirectional greedy makes about
        1.6x fewer passes at 64 regions; stochastic greedy scores
        ``ceil(ln(1 / epsilon))`` candidates per step.
    pending : int, default=8
        ``P``, the back-side candidates per step of the bidirectional search.
    epsilon : float, default=0.1
        Stochastic greedy's accuracy.
    seed : int, default=0
        Seed of the stochastic search's draws (the other searches are deterministic).

    Notes
    -----
    The reference's mode ``cls`` (the IoU replaced by ``1[IoU > 0.5]``) is a different target,
    not a parameter: ``BoxTarget(box, label, iou_threshold=0.5)``. Its grounding variant
    (greedy forward, then backward once no candidate scores) is not implemented.

    References
    ----------
    Chen, Liang, Li, Huang, Lin et al., "Interpreting Object-level Foundation Models via Visual
    Precision Search", CVPR 2025.
    """

    image_only = True
    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "fill": FILL,
        "complement_fill": [*FILL, None],
        "clue": [Interval(float, 0.0)],
        "collaboration": [Interval(float, 0.0)],
        "search": [options(SEARCHES)],
        "pending": [Interval(int, 1)],
        "epsilon": [Interval(float, 0.0, 1.0, closed="right")],
        "seed": [SEED],
    }

    regions: RegionsLike = "slic:64"
    fill: FillSpec = 0.0
    complement_fill: FillSpec | None = None
    clue: float = 1.0
    collaboration: float = 1.0
    search: Search = "greedy"
    pending: int = 8
    epsilon: float = 0.1
    seed: int = 0

    @property
    def uses_seed(self) -> bool:
        """Only the stochastic search draws at random; the others ignore ``seed``."""
        return self.search == "stochastic"

    def check(self) -> None:
        if not (self.clue or self.collaboration):
            raise InvalidParameterError(
                "At least one of VPS's weights 'clue' and 'collaboration' must be > 0. Got both "
                "0 instead; the reference sets both to 1."
            )

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Attribution:
        found = select_regions(
            model,
            inputs,
            target,
            regions=self.regions,
            fill=self.fill,
            complement_fill=self.complement_fill,
            weights=Weights(self.clue, self.collaboration, 0.0, 0.0),
            rank=lambda objective, n, count, device: run_search(
                self.search,
                objective,
                n,
                count,
                device,
                pending=self.pending,
                epsilon=self.epsilon,
                seed=self.seed,
            ),
        )
        values = precision_map(found.curves, found.order, self.clue, self.collaboration)
        return Attribution(
            found.regions.paint(values.to(inputs.dtype)).to(inputs.dtype),
            ranking=found.order,
            curves=found.curves,
        )
