"""Localisation: does the explanation point at the object, given its ground-truth mask?

Every metric here reads the attribution map and a boolean object mask ``(N, 1, H, W)`` of the
same height and width (row, column order, as the images: a mask is never transposed or
resized for you). Image attributions with several channels are summed over channels (signed)
first. None of these metrics runs the model. The pointing game
(:mod:`faithmap.metrics.pointing`) reads maps and masks the same way.

A sample whose mask is empty has no object to find: its value is NaN (not a hit, not a miss),
and means skip it. This fixes a pitfall of Quantus' pointing game, whose empty masks count as
hits.

References
----------
Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR Workshops 2020 (energy-based pointing game).
Arras, Osman, Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
neural network explanations", Information Fusion 2022 (relevance mass and rank accuracy).
Theiner, Müller-Budack, Ewerth, "Interpretable Semantic Photo Geolocation", WACV 2022
(top-k intersection).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Interval, options
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.metric import EMPTY_MASK, MetricResult, home_device, read_map, read_masks
from faithmap.core.registry import register_metric
from faithmap.errors import InvalidParameterError

Energy = Literal["positive", "absolute", "minmax"]
"""The energy of a map: ``max(a, 0)``, ``|a|``, or ``a - min(a)``."""
Relevance = Literal["positive", "absolute", "signed"]
"""The relevance counted or ranked: ``max(a, 0)``, ``|a|``, or ``a`` itself."""


def _relevance(maps: Tensor, part: str) -> Tensor:
    """The relevance counted, ``(N, H * W)``."""
    flat = maps.flatten(1)
    if part == "positive":
        return flat.clamp(min=0)
    if part == "absolute":
        return flat.abs()
    if part == "minmax":
        return flat - flat.amin(1, keepdim=True)
    return flat


def _undefined_where(values: Tensor, undefined: Tensor) -> Tensor:
    """``values`` with NaN where ``undefined``."""
    return values.masked_fill(undefined, float("nan"))


def _result(
    metric: str, values: Tensor, home: torch.device, choices: dict[str, object]
) -> MetricResult:
    return MetricResult(
        metric=metric,
        values=values.to(home),
        higher_is_better=True,
        choices={"channels": "sum", "empty_mask": EMPTY_MASK, **choices},
        cost=Cost(),
    )


def _mass_share(owner: str, explanation: object, masks: Tensor, part: str) -> MetricResult:
    """Share of the relevance ``part`` on the mask; NaN for an empty mask or a zero total."""
    maps = read_map(explanation, owner)
    flat = read_masks(masks, maps, owner)
    relevance = _relevance(maps, part)
    total = relevance.sum(1)
    inside = (relevance * flat.flatten(1)).sum(1)
    values = _undefined_where(inside / total, ~flat.flatten(1).any(1) | (total == 0))
    return _result(owner, values, home_device(explanation), {"part": part})


def _top(scores: Tensor, counts: Tensor, seed: int) -> Tensor:
    """``(N, P)`` True at each row's ``counts`` highest scores; ties by a seeded permutation."""
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(scores.shape[1], generator=generator).to(scores.device)
    order = shuffle[scores[:, shuffle].sort(dim=1, descending=True, stable=True).indices]
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    return ranks < counts[:, None]


@register_metric(
    "energy_pointing_game",
    constraints={"part": [options(("positive", "absolute", "minmax"))]},
    higher_is_better=True,
)
def energy_pointing_game(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    part: Energy = "positive",
) -> MetricResult:
    """Energy-based pointing game: share of the map's energy that falls on the object.

    ``sum over the mask of a' / sum of a'``, with ``a'`` the positive part of the map by
    default. NaN for an empty mask or a map without energy.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean object masks (a union of boxes: one mask).
    part : {"positive", "absolute", "minmax"}, default="positive"
        The energy: ``max(a, 0)``, ``|a|``, or ``a - min(a)`` (the Score-CAM code min-max
        normalises the map first, which also counts the background's offset).

    References
    ----------
    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
    Networks", CVPR Workshops 2020.

    Examples
    --------
    >>> import torch
    >>> masks = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    >>> masks[0, 0, 0] = True
    >>> energy_pointing_game(torch.tensor([[[[3.0, 1.0], [-5.0, 4.0]]]]), masks).values
    tensor([0.5000])
    """
    return _mass_share("energy_pointing_game", explanation, masks, part)


@register_metric(
    "relevance_mass_accuracy",
    constraints={"part": [options(("positive", "absolute", "signed"))]},
    higher_is_better=True,
)
def relevance_mass_accuracy(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    part: Relevance = "positive",
) -> MetricResult:
    """Relevance mass accuracy: relevance inside the mask over the total relevance.

    NaN for an empty mask or a zero total.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean ground-truth masks.
    part : {"positive", "absolute", "signed"}, default="positive"
        The relevance counted. Quantus counts signed relevance (``abs=False``), the
        CLEVR-XAI code ``|a|``; the positive part keeps the score in [0, 1].

    References
    ----------
    Arras, Osman, Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
    neural network explanations", Information Fusion 2022.
    """
    return _mass_share("relevance_mass_accuracy", explanation, masks, part)


def _top_share(
    owner: str,
    explanation: Explanation | Tensor,
    masks: Tensor,
    part: str,
    seed: int,
    k: int | None,
) -> MetricResult:
    """Share of the top-ranked pixels (``k``, or the mask's size) that lie on the mask."""
    maps = read_map(explanation, owner)
    flat = read_masks(masks, maps, owner)
    inside = flat.flatten(1)
    sizes = inside.sum(1)
    if k is None:
        counts = sizes
    else:
        pixels = inside.shape[1]
        if k > pixels:
            raise InvalidParameterError(
                f"The 'k' parameter of {owner} must be at most the number of pixels, {pixels}. "
                f"Got {k} instead; the reference k=1000 is for 224 x 224 images."
            )
        counts = torch.full_like(sizes, k)
    top = _top(_relevance(maps, part), counts, seed)
    share = (top & inside).sum(1).float() / counts.clamp(min=1).float()
    values = _undefined_where(share, sizes == 0)
    choices: dict[str, object] = {"part": part, "seed": seed, "ties": "seeded permutation"}
    if k is not None:
        choices["k"] = k
    return _result(owner, values, home_device(explanation), choices)


@register_metric(
    "relevance_rank_accuracy",
    constraints={"part": [options(("signed", "positive", "absolute"))], "seed": [SEED]},
    higher_is_better=True,
)
def relevance_rank_accuracy(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    part: Relevance = "signed",
    seed: int = 0,
) -> MetricResult:
    """Relevance rank accuracy: share of the ``K = |mask|`` most relevant pixels on the mask.

    NaN for an empty mask. Equal relevances are ordered by a permutation drawn from ``seed``.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean ground-truth masks.
    part : {"signed", "positive", "absolute"}, default="signed"
        What is ranked (the positive part ties every negative pixel at zero).
    seed : int, default=0
        Seed of the tie-break.

    References
    ----------
    Arras, Osman, Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
    neural network explanations", Information Fusion 2022.
    """
    return _top_share("relevance_rank_accuracy", explanation, masks, part, seed, None)


@register_metric(
    "top_k_intersection",
    constraints={
        "k": [Interval(int, 1)],
        "part": [options(("signed", "positive", "absolute"))],
        "seed": [SEED],
    },
    higher_is_better=True,
)
def top_k_intersection(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    k: int = 1000,
    part: Relevance = "signed",
    seed: int = 0,
) -> MetricResult:
    """Top-k intersection: share of the ``k`` most relevant pixels that lie on the mask.

    NaN for an empty mask. Equal relevances are ordered by a permutation drawn from ``seed``.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean ground-truth masks.
    k : int, default=1000
        Pixels counted (Quantus' default, meant for 224 x 224 images); at most ``H * W``.
    part : {"signed", "positive", "absolute"}, default="signed"
        What is ranked.
    seed : int, default=0
        Seed of the tie-break.

    References
    ----------
    Theiner, Müller-Budack, Ewerth, "Interpretable Semantic Photo Geolocation", WACV 2022.
    """
    return _top_share("top_k_intersection", explanation, masks, part, seed, k)
