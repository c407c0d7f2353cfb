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

from faithmap.errors import InvalidParameterError
from faithmap.methods.subset.evaluator import SubsetScores
from faithmap.validation import check_float


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
    count = keeps.shape[1]
    eye = torch.eye(count, dtype=torch.bool, device=keeps.device)
    others = distances.masked_fill(~keeps[:, None, :] | eye, math.inf).amin(2)
    nearest = others.masked_fill(~keeps | torch.isinf(others), 0.0)
    return nearest.sum(1)


class Objective:
    """``F(S)`` for batches of subsets, the ``score`` every search in ``search.py`` calls."""

    def __init__(self, scores: SubsetScores, weights: Weights) -> None:
        self.scores, self.weights = scores, weights
        self._distances: Tensor | None = None

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        w = self.weights
        value = torch.zeros(samples.shape[0], dtype=torch.float64, device=samples.device)
        subset_side = bool(w.consistency or w.confidence)
        parts_samples, parts_keeps = [], []
        if subset_side:
            parts_samples.append(samples)
            parts_keeps.append(keeps)
        if w.collaboration:
            parts_samples.append(samples)
            parts_keeps.append(~keeps)
        if parts_samples:
            read = self.scores.readouts(torch.cat(parts_samples), torch.cat(parts_keeps))
            if subset_side:
                value += w.consistency * read[: samples.shape[0], 0]
                value += w.confidence * read[: samples.shape[0], 1]
            if w.collaboration:
                value += w.collaboration * (1.0 - read[-samples.shape[0] :, 0])
        if w.effectiveness:
            if self._distances is None:
                self._distances = self.scores.distances()
            usable = keeps & self.scores.nonempty[samples]
            value += w.effectiveness * effectiveness(self._distances[samples], usable)
        return value

    def curves(self, order: Tensor) -> dict[str, Tensor]:
        """Insertion, deletion and area curves ``(N, R + 1)`` of the prefixes of ``order``.

        Point ``m`` is the image keeping the first ``m`` regions (insertion) or all but them
        (deletion), scored as the target probability; ``area`` is the fraction of pixels in the
        first ``m`` regions. Subsets the search already scored come from the cache.
        """
        n, count = order.shape
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(count, device=order.device).expand(n, count)
        )
        steps = torch.arange(count + 1, device=order.device)
        prefixes = ranks[:, None, :] < steps[None, :, None]
        flat = prefixes.reshape(n * (count + 1), count)
        samples = torch.arange(n, device=order.device).repeat_interleave(count + 1)
        read = self.scores.readouts(torch.cat([samples, samples]), torch.cat([flat, ~flat]))
        probs = read[:, 0].view(2, n, count + 1)
        sizes = self.scores.regions.sizes().to(order.device)
        area = (prefixes.float() * sizes[:, None, :]).sum(2) / sizes.sum(1, keepdim=True)
        return {"insertion": probs[0], "deletion": probs[1], "area": area.double()}
