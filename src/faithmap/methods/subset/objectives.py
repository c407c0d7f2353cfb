"""The subset-selection objective: consistency, collaboration, confidence, effectiveness.

For a subset ``S`` of an image's regions ``V``, with ``p`` the model's softmax on the image
keeping only ``S`` and ``y`` the target:

* consistency ``p_y(S)``;
* collaboration ``1 - p_y(V \\ S)``, the target probability of the complement;
* confidence ``1 - H(p) / log K`` (LiMA), or SMDL's evidential ``1 - K / sum_k(e_k + 1)`` with
  ``e = exp(clamp(z, -10, 10))`` of the logits ``z``;
* effectiveness ``sum_{i in S} min_{j in S, j != i} arccos(cos(f_i, f_j)) / pi`` over the
  embeddings ``f`` of single-region images (0 for ``|S| <= 1``).

``F(S)`` is their weighted sum. A term of weight 0 costs nothing: consistency and confidence
share the forward pass of ``S``, collaboration needs the pass of ``V \\ S``, and effectiveness
needs the single-region embeddings once per image (read from the single-region passes the
search makes anyway, or scored in one call when it does not).

References
----------
Chen et al., "Less is More: Fewer Interpretable Region via Submodular Subset Selection",
ICLR 2024. Chen et al., "Less is More: Efficient Black-box Attribution via Minimal
Interpretable Subset Selection", 2025.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.validation import check_float
from faithmap.errors import InvalidParameterError
from faithmap.methods.subset.evaluator import SubsetScores


@dataclass(frozen=True)
class Weights:
    """The weight of each term of the objective (non-negative; 0 switches a term off)."""

    consistency: float
    collaboration: float
    confidence: float
    effectiveness: float

    def __post_init__(self) -> None:
        for name in ("consistency", "collaboration", "confidence", "effectiveness"):
            check_float(getattr(self, name), name, "the subset-selection objective", low=0.0)
        if not any((self.consistency, self.collaboration, self.confidence, self.effectiveness)):
            raise InvalidParameterError(
                "At least one weight of the subset-selection objective (consistency, "
                "collaboration, confidence, effectiveness) must be > 0. Got all 0; set "
                "consistency=1 for example."
            )


def effectiveness(distances: Tensor, keeps: Tensor) -> Tensor:
    """Effectiveness ``(M,)`` of subsets ``keeps`` ``(M, R)`` with ``distances`` ``(M, R, R)``."""
    return _nearest(distances, keeps).sum(1)


def _nearest(distances: Tensor, keeps: Tensor) -> Tensor:
    """Each member's distance to its nearest other member ``(M, R)``; 0 off the subset or alone."""
    others = _nearest_other(distances, keeps)
    return others.masked_fill(~keeps | torch.isinf(others), 0.0)


def _nearest_other(distances: Tensor, keeps: Tensor) -> Tensor:
    """Each region's distance to its nearest member other than itself (inf when there is none)."""
    eye = torch.eye(keeps.shape[1], dtype=torch.bool, device=keeps.device)
    return distances.masked_fill(~keeps[:, None, :] | eye, math.inf).amin(2)


def incremental_effectiveness(distances: Tensor, samples: Tensor, keeps: Tensor) -> Tensor:
    """Effectiveness ``(M,)`` of subsets ``keeps`` of images ``samples``, per image's distances.

    A greedy step scores subsets that each add one region ``c`` to a base ``S`` shared by all
    rows of an image (the intersection of its rows). The base's nearest-member distances are
    computed once per image, ``O(R^2)``; each row then costs ``O(R)``: a member's nearest
    distance becomes ``min(near_S(i), d(i, c))`` and ``c``'s own is ``min_{j in S} d(c, j)``.
    Rows that differ from their image's base by more than one region use the full formula.
    """
    images, image_of = torch.unique(samples, return_inverse=True)
    base = torch.ones(images.shape[0], keeps.shape[1], device=keeps.device)
    rows_of = image_of[:, None].expand_as(keeps)
    base = base.scatter_reduce_(0, rows_of, keeps.float(), "amin").bool()
    row_base = base[image_of]
    added = keeps & ~row_base
    extra = added.sum(1)
    values = torch.zeros(keeps.shape[0], dtype=distances.dtype, device=keeps.device)
    base_others = _nearest_other(distances[images], base)
    base_value = base_others.masked_fill(~base | torch.isinf(base_others), 0.0).sum(1)
    single = extra <= 1
    if bool(single.any()):
        rows = single.nonzero().squeeze(1)
        image, members = image_of[rows], row_base[rows]
        to_added = distances[images[image], :, added[rows].float().argmax(1)]
        nearest = torch.minimum(base_others[image], to_added).masked_fill(~members, 0.0)
        own = to_added.masked_fill(~members, math.inf).amin(1)
        grown = nearest.sum(1) + own.nan_to_num(posinf=0.0)
        values[rows] = torch.where(extra[rows] == 1, grown, base_value[image])
    if not bool(single.all()):
        rows = (~single).nonzero().squeeze(1)
        values[rows] = effectiveness(distances[samples[rows]], keeps[rows])
    return values


class Objective:
    """``F(S)`` for batches of subsets, the ``score`` every search in ``search.py`` calls."""

    def __init__(self, scores: SubsetScores, weights: Weights) -> None:
        self.scores, self.weights = scores, weights
        self._distances: Tensor | None = None

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        w = self.weights
        subset = complement = None
        subset_side = bool(w.consistency or w.confidence)
        parts_samples, parts_keeps, parts_sides = [], [], []
        if subset_side:
            parts_samples.append(samples)
            parts_keeps.append(keeps)
            parts_sides.append(torch.zeros_like(samples))
        if w.collaboration:
            parts_samples.append(samples)
            parts_keeps.append(~keeps)
            parts_sides.append(torch.ones_like(samples))
        if parts_samples:
            read = self.scores.readouts(
                torch.cat(parts_samples), torch.cat(parts_keeps), torch.cat(parts_sides)
            )
            subset = read[: samples.shape[0]] if subset_side else None
            complement = read[-samples.shape[0] :] if w.collaboration else None
        return self.combine(samples, keeps, subset, complement)

    def combine(
        self, samples: Tensor, keeps: Tensor, subset: Tensor | None, complement: Tensor | None
    ) -> Tensor:
        """``F`` ``(M,)`` from the readouts ``(M, 2)`` of the subsets and of their complements
        (each ``None`` where its terms have weight 0); effectiveness is computed here."""
        w = self.weights
        value = torch.zeros(samples.shape[0], dtype=torch.float64, device=samples.device)
        if subset is not None:
            value += w.consistency * subset[:, 0] + w.confidence * subset[:, 1]
        if complement is not None:
            value += w.collaboration * (1.0 - complement[:, 0])
        if w.effectiveness:
            if self._distances is None:
                self._distances = self.scores.distances()
            usable = keeps & self.scores.nonempty[samples]
            value += w.effectiveness * incremental_effectiveness(self._distances, samples, usable)
        return value

    def first_order(self, samples: Tensor, keeps: Tensor) -> Tensor:
        """First-order estimates ``(M, R)`` of every region's marginal gain at ``keeps`` (the
        gradient of the consistency, confidence and collaboration terms with respect to a soft
        region mask; effectiveness is left out), one forward and one backward pass per side;
        see :meth:`SubsetScores.first_order`."""
        w = self.weights
        return self.scores.first_order(
            samples, keeps, ((w.consistency, w.confidence), w.collaboration)
        )

    def curves(self, order: Tensor) -> dict[str, Tensor]:
        """Insertion, deletion and area curves ``(N, R + 1)`` of the prefixes of ``order``.

        Point ``m`` is the image keeping the first ``m`` regions (insertion) or all but them
        (deletion, on the complement's fill), scored as the target probability; ``area`` is the
        fraction of pixels in the first ``m`` regions. Subsets the search already scored come
        from the cache.
        """
        n, count = order.shape
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(count, device=order.device).expand(n, count)
        )
        steps = torch.arange(count + 1, device=order.device)
        prefixes = ranks[:, None, :] < steps[None, :, None]
        flat = prefixes.reshape(n * (count + 1), count)
        samples = torch.arange(n, device=order.device).repeat_interleave(count + 1)
        sides = torch.cat([torch.zeros_like(samples), torch.ones_like(samples)])
        read = self.scores.readouts(torch.cat([samples, samples]), torch.cat([flat, ~flat]), sides)
        probs = read[:, 0].view(2, n, count + 1)
        sizes = self.scores.regions.sizes().to(order.device)
        area = (prefixes.float() * sizes[:, None, :]).sum(2) / sizes.sum(1, keepdim=True)
        return {"insertion": probs[0], "deletion": probs[1], "area": area.double()}
