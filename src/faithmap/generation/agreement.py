"""Agreement between generation explanations: the Spearman rank correlation matrix.

For every pair of methods and every generated step, the Spearman correlation of their
attribution rows over the prompt's features (ranks of ties averaged); the matrix holds the mean
over steps. A step where either row is constant has no rank order and is left out of the mean
(``nan`` when no step is left). Neely et al. report such matrices to show how far explanation
methods disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.generation.explanation import GenerationExplanation


@dataclass(frozen=True)
class Agreement:
    """Rank agreement between methods.

    Attributes
    ----------
    names : list of str
        The methods, in the order of the matrix's rows and columns.
    matrix : Tensor
        ``(M, M)`` mean Spearman correlation over steps (1 on the diagonal where defined).
    per_step : Tensor
        ``(M, M, S)`` the correlation at every step (``nan`` where a row is constant).
    """

    names: list[str]
    matrix: Tensor
    per_step: Tensor


def average_ranks(rows: Tensor) -> Tensor:
    """Ranks ``1 .. F`` of each row's values, ties given their average rank."""
    values = rows.double()
    below = (values[..., :, None] > values[..., None, :]).sum(-1)
    equal = (values[..., :, None] == values[..., None, :]).sum(-1)
    return below + (equal + 1) / 2.0


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """Spearman correlation of matching rows of two ``(S, F)`` tensors, ``(S,)``; ``nan`` where
    a row is constant."""
    a = average_ranks(first)
    b = average_ranks(second)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    norm = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    return torch.where(norm > 0, (a * b).sum(-1) / norm.clamp(min=1e-300), torch.nan)


def agreement(explanations: Mapping[str, GenerationExplanation | Tensor]) -> Agreement:
    """The Spearman rank correlation matrix of several explanations of the same steps.

    Parameters
    ----------
    explanations : mapping of str to GenerationExplanation or Tensor
        At least two, each ``(S, F)`` with the same ``S`` and ``F``.

    References
    ----------
    Neely, Schouten, Bleeker, Lucic, "A Song of (Dis)agreement: Evaluating the Evaluation of
    Explainable Artificial Intelligence in Natural Language Processing", HHAI 2022;
    Krishna et al., "The Disagreement Problem in Explainable Machine Learning", TMLR 2024.
    """
    if len(explanations) < 2:
        raise InvalidParameterError(
            f"agreement compares at least two explanations. Got {len(explanations)}."
        )
    names = list(explanations)
    rows = [
        item.attributions if isinstance(item, GenerationExplanation) else item
        for item in explanations.values()
    ]
    shape = rows[0].shape
    for name, row in zip(names, rows, strict=True):
        if row.dim() != 2 or row.shape != shape or not torch.isfinite(row).all():
            raise ShapeError(
                f"Every explanation given to agreement must be a finite (steps, features) matrix "
                f"of the same shape {tuple(shape)}. {name!r} has {tuple(row.shape)}."
            )
    count = len(rows)
    per_step = torch.full((count, count, shape[0]), torch.nan, dtype=torch.float64)
    for i in range(count):
        for j in range(i, count):
            per_step[i, j] = per_step[j, i] = spearman(rows[i].cpu(), rows[j].cpu())
    return Agreement(names, per_step.nanmean(dim=2), per_step)
