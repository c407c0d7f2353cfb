"""Features and coalitions shared by the black-box methods that remove whole features.

Feature ablation, LIME, KernelSHAP, Sobol and HSIC all score the model on copies of each input in
which a *coalition* of features is kept and the rest removed. Here a feature is a region of an
image (:mod:`faithmap.core.regions`) or a column of a tabular batch ``(N, F)``; a coalition is a
keep vector over the features (``1`` keep, ``0`` remove, values in between blend). The same
coalitions are used for every input, so the whole batch of inputs is scored in one stream of model
calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.model import Activation, Model
from faithmap.core.regions import Regions, RegionsLike, make_regions
from faithmap.core.removal import FillLike, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import ShapeError

Coalitions = Callable[[Tensor], Tensor]
"""Keep vectors ``(B, R)`` of the coalitions with the given indices ``(B,)``."""


@dataclass(frozen=True)
class Features:
    """The features of a batch: image regions, or the columns of a tabular batch.

    Attributes
    ----------
    count : int
        The number of features ``R``.
    regions : Regions or None
        The image partition; ``None`` when every column of an ``(N, F)`` batch is a feature.
    """

    count: int
    regions: Regions | None

    def masks(self, keep: Tensor, samples: Tensor) -> Tensor:
        """Input keep-masks of the rows ``samples`` from feature keep vectors ``(B, R)``."""
        return keep if self.regions is None else self.regions.to_pixels(keep, samples)

    def paint(self, values: Tensor) -> Tensor:
        """Per-feature values ``(N, R)`` as a map: ``(N, 1, H, W)``, or ``(N, F)`` for columns."""
        return values if self.regions is None else self.regions.paint(values)


def make_features(spec: RegionsLike, inputs: Tensor) -> Features:
    """The features of ``inputs``: ``spec`` resolved by :func:`~faithmap.core.regions.make_regions`
    for images ``(N, C, H, W)``; every column for a tabular batch ``(N, F)`` (``spec`` unused)."""
    if inputs.dim() == 2:
        return Features(int(inputs.shape[1]), None)
    if inputs.dim() != 4:
        raise ShapeError(
            "Feature-removal methods explain images (N, C, H, W) or tabular rows (N, F). Got "
            f"inputs of shape {tuple(inputs.shape)} instead; flatten other inputs to (N, F)."
        )
    regions = make_regions(spec, inputs)
    return Features(regions.count, regions)


def score_coalitions(
    model: Model,
    inputs: Tensor,
    target: Target,
    features: Features,
    fill: FillLike,
    coalitions: Coalitions,
    count: int,
    *,
    activation: Activation,
) -> Tensor:
    """Target scores ``(N, count)`` of every input with each of ``count`` coalitions kept.

    ``coalitions(indices)`` gives the keep vectors of a batch of coalition indices; they are
    turned into input masks and blended with the fill on the inputs' device, batch by batch.
    """
    substrate = make_removal(fill).substrate(inputs)

    def masks(samples: Tensor, indices: Tensor) -> Tensor:
        keep = coalitions(indices).to(device=inputs.device, dtype=inputs.dtype)
        return features.masks(keep, samples)

    return score_removals(model, inputs, target, substrate, masks, count, activation=activation)


def weighted_least_squares(
    design: Tensor, weights: Tensor, targets: Tensor, *, ridge: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Weighted (ridge) regression with an unpenalised intercept, for all inputs at once.

    Parameters
    ----------
    design : Tensor
        ``(S, R)`` coalitions, shared by every input.
    weights : Tensor
        ``(S,)`` sample weights, shared by every input.
    targets : Tensor
        ``(N, S)`` scores, one row per input.
    ridge : float, default=0.0
        L2 penalty on the coefficients (scikit-learn's ``Ridge(alpha=ridge)``).

    Returns
    -------
    coefficients : Tensor
        ``(N, R)``.
    intercept : Tensor
        ``(N,)``.
    """
    design, weights, targets = design.double(), weights.double(), targets.double()
    total = weights.sum()
    x_mean = weights @ design / total
    y_mean = targets @ weights / total
    centred = design - x_mean
    gram = centred.T @ (weights[:, None] * centred)
    gram = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    moments = centred.T @ (weights[:, None] * (targets - y_mean[:, None]).T)
    coefficients = solve_normal_equations(gram, moments).T
    return coefficients, y_mean - coefficients @ x_mean


def solve_normal_equations(gram: Tensor, moments: Tensor) -> Tensor:
    """The minimum-norm solution of ``gram @ solution = moments`` for a symmetric positive
    semi-definite ``gram``, in float64.

    Eigen-directions of ``gram`` below ``1e-10`` of its largest eigenvalue are dropped, so an
    under-determined fit (fewer coalitions than features) has one answer, whatever the rounding
    of the scores.
    """
    values, vectors = torch.linalg.eigh(gram.double())
    kept = values > 1e-10 * values.max().clamp_min(torch.finfo(torch.float64).tiny)
    inverse = torch.where(kept, 1.0 / values, torch.zeros_like(values))
    solution: Tensor = vectors @ (inverse[:, None] * (vectors.T @ moments.double()))
    return solution
