"""The grid pointing game and AggAtt: localisation on grids whose cell classes are known.

On a grid of images of distinct classes (:func:`faithmap.data.make_grid`), the evidence for the
class of cell ``i`` lies in cell ``i``. The grid pointing game scores the share of an
attribution's positive mass that falls in that cell; with DiFull models
(:mod:`faithmap.zoo.grid_models`) any mass elsewhere is provably unfaithful. AggAtt sorts many
maps by that score and averages them per percentile bin, to show how a method's maps look at
its best, typical and worst.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022
(grid pointing game, DiFull, DiPart, ML-Att, AggAtt).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation, attribution_map
from faithmap.core.metric import MetricResult, home_device, read_masks
from faithmap.core.registry import register_metric
from faithmap.errors import InvalidParameterError, ShapeError

__all__ = [
    "AGGATT_BINS",
    "AggAttResult",
    "aggatt",
    "bins_filled",
    "grid_pointing_game",
    "grid_scores",
]

ZERO_MASS: Final = 1e-7
"""A map whose positive mass is below this scores 0 (the reference code's threshold)."""

AGGATT_BINS: Final[tuple[float, ...]] = (0.0, 0.02, 0.05, 0.5, 0.95, 0.98, 1.0)
"""The percentile edges of AggAtt's bins, best maps first."""

COLOUR_PERCENTILE: Final = 99.5
"""The shared colour scale of AggAtt's bin maps ends at this percentile of their values."""


def _positive_maps(explanation: object, size: tuple[int, int], owner: str) -> Tensor:
    """``(N, H, W)``: channels summed, upsampled bilinearly to ``size``, negatives clamped."""
    attributions = attribution_map(explanation).detach().float()
    if attributions.dim() == 3:
        attributions = attributions[:, None]
    if attributions.dim() != 4:
        raise ShapeError(
            f"The attributions for {owner} must have shape (N, 1 or C, h, w) or (N, h, w). Got "
            f"{tuple(attributions.shape)} instead."
        )
    if not bool(torch.isfinite(attributions).all()):
        raise ShapeError(
            f"The attributions for {owner} contain NaN or inf values. Check the method's output."
        )
    maps = attributions.sum(dim=1, keepdim=True)
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps[:, 0].clamp(min=0)


def _cell_masks(masks: object, n: int, owner: str) -> Tensor:
    if not isinstance(masks, Tensor) or masks.dim() != 4 or masks.shape[:2] != (n, 1):
        shape = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ShapeError(
            f"The masks of {owner} must be (N, 1, H, W) boolean cell masks for the N maps "
            f"(GridBatch.masks(cell)). Got {shape} instead."
        )
    return masks


def grid_scores(explanation: object, masks: Tensor, owner: str = "grid_scores") -> Tensor:
    """``(N, 2)``: each map's localisation score and its positive mass inside the cell."""
    masks = _cell_masks(masks, attribution_map(explanation).shape[0], owner)
    maps = _positive_maps(explanation, (masks.shape[-2], masks.shape[-1]), owner)
    inside = (maps * read_masks(masks, maps, owner)).flatten(1).sum(1)
    total = maps.flatten(1).sum(1)
    score = torch.where(total < ZERO_MASS, torch.zeros_like(total), inside / total)
    return torch.stack([score, inside], dim=1)


@register_metric("grid_pointing_game", higher_is_better=True)
def grid_pointing_game(explanation: Explanation | Tensor, masks: Tensor) -> MetricResult:
    """Grid pointing game: the share of the positive attribution inside the explained cell.

    ``score = sum over cell i of A+ / sum of A+``, where ``A+`` is the map summed over channels,
    upsampled bilinearly to the masks' size (a map from a layer is smaller than the grid) and
    clamped at 0. A map with less than ``1e-7`` positive mass scores 0. A perfect map scores 1;
    a uniform one ``1 / scale**2``, the chance level.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, h, w)`` for the class of the explained cell.
    masks : Tensor
        ``(N, 1, H, W)`` boolean masks of the explained cell of each grid
        (:meth:`faithmap.data.GridBatch.masks`).

    References
    ----------
    Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.

    Examples
    --------
    >>> cell = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    >>> cell[0, 0, :2, :2] = True
    >>> grid_pointing_game(torch.ones(1, 1, 4, 4), cell).values
    tensor([0.2500])
    """
    values = grid_scores(explanation, masks, "grid_pointing_game")[:, 0]
    return MetricResult(
        metric="grid_pointing_game",
        values=values.to(home_device(explanation)),
        higher_is_better=True,
        choices={"channels": "sum", "upsample": "bilinear", "part": "positive"},
        cost=Cost(),
    )


@dataclass(frozen=True)
class AggAttResult:
    """AggAtt's bins: the mean positive map of each percentile bin of the sorted maps.

    Attributes
    ----------
    maps : Tensor
        ``(B, H, W)``: the mean positive map of each bin, best-localised bin first.
    edges : tuple of float
        The ``B + 1`` percentile edges (:data:`AGGATT_BINS`).
    counts : Tensor
        ``(B,)`` maps per bin.
    scores : Tensor
        ``(B,)`` the mean localisation score per bin.
    vmax : float
        The shared colour scale's top: the 99.5th percentile of the bins' values.
    """

    maps: Tensor
    edges: tuple[float, ...]
    counts: Tensor
    scores: Tensor
    vmax: float


def _bounds(n: int, edges: tuple[float, ...]) -> list[int]:
    return [round(edge * n) for edge in edges]


def bins_filled(n: int, edges: tuple[float, ...] = AGGATT_BINS) -> bool:
    """Whether ``n`` maps put at least one map in every AggAtt bin of ``edges``."""
    return all(lo < hi for lo, hi in pairwise(_bounds(n, edges)))


def aggatt(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    edges: tuple[float, ...] = AGGATT_BINS,
) -> AggAttResult:
    """Aggregate attributions: sort maps by localisation, average the positive maps per bin.

    Maps (for one cell position, e.g. the top-left cell of every grid) are sorted by their
    grid pointing game score, ties by their positive mass inside the cell, best first; the
    sorted list is cut at the percentile ``edges`` and each bin's positive maps (upsampled to
    the masks' size) are averaged. The bins share one colour scale, ending at the 99.5th
    percentile of their values. A qualitative tool: it shows a method's best, typical and
    worst maps.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, h, w)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean masks of the explained cell.
    edges : tuple of float, default=AGGATT_BINS
        Increasing percentile edges from 0 to 1.

    Raises
    ------
    InvalidParameterError
        If ``edges`` does not increase from 0 to 1, or a bin would hold no map (fewer maps than
        bins need: the default edges need at least 50 maps).

    References
    ----------
    Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
    """
    increasing = all(a < b for a, b in pairwise(edges))
    if len(edges) < 2 or edges[0] != 0.0 or edges[-1] != 1.0 or not increasing:
        raise InvalidParameterError(
            f"The 'edges' parameter of aggatt must increase from 0.0 to 1.0. Got {edges!r}."
        )
    scores = grid_scores(explanation, masks, "aggatt")
    masks = _cell_masks(masks, scores.shape[0], "aggatt")
    maps = _positive_maps(explanation, (masks.shape[-2], masks.shape[-1]), "aggatt")
    n = maps.shape[0]
    by_mass = scores[:, 1].argsort(descending=True, stable=True)
    order = by_mass[scores[by_mass, 0].argsort(descending=True, stable=True)]
    bounds = _bounds(n, edges)
    if not bins_filled(n, edges):
        raise InvalidParameterError(
            f"aggatt got {n} maps, too few for the percentile bins {edges!r}: some bin would be "
            "empty. Explain more cells, or pass coarser edges."
        )
    chosen = [order[lo:hi] for lo, hi in pairwise(bounds)]
    binned = torch.stack([maps[idx].mean(0) for idx in chosen])
    vmax = float(torch.quantile(binned.flatten().double(), COLOUR_PERCENTILE / 100))
    return AggAttResult(
        maps=binned,
        edges=tuple(edges),
        counts=torch.tensor([len(idx) for idx in chosen]),
        scores=torch.stack([scores[idx, 0].mean() for idx in chosen]),
        vmax=vmax,
    )
