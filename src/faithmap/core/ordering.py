"""Feature orderings: which features a perturbation metric moves first.

The curves (insertion, deletion), ROAD and the fidelity metrics move "features": whole pixels
(all channels) or regions (:mod:`~faithmap.core.regions`), ranked by their attribution (channels
summed, signed; a region by its mean attribution), ties broken by a permutation drawn from a
seed. These helpers are shared by those metrics, so none of them borrows from another.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import options
from faithmap.core.regions import Regions, make_regions

Order = Literal["morf", "lerf", "random"]
"""Most relevant first, least relevant first, or a seeded random order."""
ORDERS: tuple[str, ...] = get_args(Order)
ORDER = options(ORDERS)
"""The constraint of an ``order`` parameter."""

UnitLike = str | Regions | Tensor
"""``"pixel"``, ``"patches:K"``, ``"slic:K"`` (see :func:`faithmap.make_regions`), a
:class:`~faithmap.Regions` or an integer label map."""


def pixel_ranks(attributions: Tensor, seed: int) -> Tensor:
    """Rank of each pixel, 0 for the most important, ``(N, H * W)``; seeded random tie-break.

    Examples
    --------
    >>> import torch
    >>> pixel_ranks(torch.tensor([[[[0.5, 2.0], [-1.0, 1.0]]]]), seed=0).tolist()
    [[2, 0, 3, 1]]
    """
    values = attributions.sum(1) if attributions.dim() == 4 else attributions
    values = values.flatten(1).float()
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(values.shape[1], generator=generator).to(values.device)
    order = shuffle[values[:, shuffle].sort(dim=1, descending=True, stable=True).indices]
    ranks = torch.empty_like(order)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def unit_regions(unit: UnitLike, inputs: Tensor) -> Regions:
    """The features a metric moves: ``"pixel"`` or anything :func:`make_regions` accepts."""
    return make_regions("pixels" if isinstance(unit, str) and unit == "pixel" else unit, inputs)


def describe_unit(regions: Regions) -> str:
    """A short record of a metric's unit for result tables."""
    return "pixel" if regions.kind == "pixels" else regions.kind


def unit_ranks(
    attributions: Tensor, regions: Regions, order: str, seed: int
) -> tuple[Tensor, Tensor]:
    """Rank of every pixel's region in the removal order, ``(N, H * W)``, and regions per image.

    Regions are ranked by their mean attribution (channels summed): descending for ``"morf"``,
    by a seeded random key for ``"random"``, ties broken by a seeded random permutation;
    ``"lerf"`` is the exact reverse of ``"morf"``. Labels an image does not use come last, so
    image ``n`` moves its ``counts[n]`` regions first.
    """
    if regions.kind == "pixels" and order == "morf":
        counts = torch.full((attributions.shape[0],), regions.count, device=attributions.device)
        return pixel_ranks(attributions, seed), counts
    device = attributions.device
    values = regions.pool(attributions.float())
    present = regions.sizes() > 0
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(regions.count, generator=generator).to(device)
    if order == "random":
        values = torch.rand(values.shape, generator=generator).to(device)
    values = values.masked_fill(~present, -torch.inf)
    ordered = shuffle[values[:, shuffle].sort(dim=1, descending=True, stable=True).indices]
    ranks = torch.empty_like(ordered)
    positions = torch.arange(regions.count, device=device).expand_as(ordered)
    ranks.scatter_(1, ordered, positions)
    counts = present.sum(1)
    if order == "lerf":  # the exact reverse of the MoRF order, ties included
        ranks = torch.where(present, counts[:, None] - 1 - ranks, ranks)
    return ranks.gather(1, regions.labels.flatten(1)), counts
