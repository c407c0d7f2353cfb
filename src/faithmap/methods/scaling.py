"""Defaults scaled to the input's size: the windows, patches and grids a method leaves ``None``.

A fixed pixel size suits one input size only: an 8-pixel patch cuts a 64 x 64 image into the 8 x 8
grid of the Sobol and HSIC papers, but an 8 x 8 image into one patch (a constant map) and a
224 x 224 image into 784 (hundreds of thousands of passes). The automatic size keeps the *grid*
instead: square cells of side ``max(1, round(sqrt(H * W) / 8))`` pixels, about 8 x 8 = 64 cells on
any image, square pixels kept on a non-square one (48 x 192: 12-pixel cells, 4 x 16 of them).
"""

from __future__ import annotations

import math

from torch import Tensor

from faithmap.core.regions import RegionsLike
from faithmap.methods.coalitions import Features, make_features

CELLS = 8
"""Cells along the side of a square image at the automatic size (the papers' 8 x 8 grid)."""


def grid_side(height: int, width: int, cells: int = CELLS) -> int:
    """The side in pixels of square cells cutting an ``height x width`` image into about
    ``cells x cells`` of them: ``max(1, round(sqrt(height * width) / cells))``.

    >>> grid_side(64, 64), grid_side(224, 224), grid_side(48, 192), grid_side(8, 8)
    (8, 28, 12, 1)
    """
    return max(1, round(math.sqrt(height * width) / cells))


def auto_patches(inputs: Tensor) -> str:
    """The patch spec ``"patches:K"`` of :func:`grid_side` for images ``(N, C, H, W)``."""
    height, width = inputs.shape[-2:]
    return f"patches:{grid_side(int(height), int(width))}"


def resolve_regions(spec: RegionsLike | None, inputs: Tensor) -> RegionsLike | None:
    """``spec``, or for ``None`` the automatic patches of images (:func:`auto_patches`); ``None``
    stays for a tabular batch ``(N, F)``, whose features are its columns."""
    if spec is None and inputs.dim() == 4:
        return auto_patches(inputs)
    return spec


def scaled_features(spec: RegionsLike | None, inputs: Tensor) -> Features:
    """:func:`~faithmap.methods.coalitions.make_features` of ``spec`` resolved by
    :func:`resolve_regions` (a tabular batch's columns whatever the spec)."""
    resolved = resolve_regions(spec, inputs)
    return make_features("pixels" if resolved is None else resolved, inputs)
