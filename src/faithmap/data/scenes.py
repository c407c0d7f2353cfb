"""Scenes of several shapes per image, with exact boxes, classes and masks: detection data.

Each image is a textured background (the one of :func:`faithmap.data.make_shapes`) holding one
to a few shapes of :data:`faithmap.data.CLASS_NAMES`, each in its own colour. The image is cut
into a 3 x 3 grid and every object sits inside its own cell with a margin of one pixel, so
objects never overlap or touch: each object's mask is the whole shape, and its box is the
tight box of that mask. As in :mod:`faithmap.data.synthetic`, every object colour differs from
the background colour by 0.35 to 0.65 in each channel, so each mask is exactly the set of pixels
that look like its object, and colours never identify the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import torch

from faithmap.core.constraints import Interval, check_param
from faithmap.core.validation import check_int
from faithmap.data.synthetic import (
    _GRADIENT_AMPLITUDE,
    _MIN_COLOUR_GAP,
    _PIXEL_NOISE,
    CLASS_NAMES,
    _background,
    _shape_masks,
    _uniform,
)
from faithmap.errors import InvalidParameterError

__all__ = ["ShapesScenes", "make_shapes_scenes"]

_GRID: Final = 3
"""Cells per side: an image holds at most ``_GRID ** 2`` objects."""
# Side of an object's box as a fraction of its cell's side: 14.4-28.8 px at 96 x 96.
_MIN_SCALE: Final = 0.45
_MAX_SCALE: Final = 0.9
# Pixels left free inside each cell's border: objects in neighbouring cells are >= 2 px apart.
_MARGIN: Final = 1.0
# Images drawn per chunk: bounds the temporary memory of large sets.
_CHUNK: Final = 512


@dataclass(frozen=True)
class ShapesScenes:
    """Images of several shapes each, with one box, label and mask per object.

    Attributes
    ----------
    images : torch.Tensor
        ``(n, 3, size, size)`` float32 in ``[0, 1]``.
    boxes : list of torch.Tensor
        One ``(K_i, 4)`` float32 tensor per image: ``x0, y0, x1, y1`` in pixels, the tight box
        of each object's mask (``x0, y0`` the first column and row it covers, ``x1, y1`` one past
        the last, so ``x1 - x0`` is its width in pixels).
    labels : list of torch.Tensor
        One ``(K_i,)`` int64 tensor per image, indices into `class_names`.
    masks : list of torch.Tensor
        One ``(K_i, size, size)`` bool tensor per image, True exactly on each object's pixels.
    class_names : tuple of str
        Name of each label.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    masks: list[torch.Tensor]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def make_shapes_scenes(
    n: int,
    *,
    seed: int = 0,
    size: int = 96,
    min_objects: int = 1,
    max_objects: int = 4,
) -> ShapesScenes:
    """Draw `n` scenes of several coloured shapes on textured backgrounds, for detection.

    Each image holds ``K`` objects, ``K`` uniform in ``[min_objects, max_objects]``, placed in
    ``K`` distinct cells of a 3 x 3 grid drawn at random. Each object's class is uniform over
    :data:`~faithmap.data.CLASS_NAMES`; its bounding square has a side of 0.45 to 0.9 of a cell
    (14 to 29 pixels at 96 x 96, the object sizes of :func:`~faithmap.data.make_shapes` at
    64 x 64) and lies at a uniform position inside its cell, one pixel from the cell's border.
    Background and pixel noise are those of :func:`~faithmap.data.make_shapes`.

    Parameters
    ----------
    n : int
        Number of images, >= 1.
    seed : int, default=0
        Seed of the private random generator, >= 0. The same seed gives the same scenes; the
        global random state is neither read nor changed.
    size : int, default=96
        Height and width of the images in pixels, >= 48.
    min_objects, max_objects : int, default=1, 4
        Fewest and most objects per image, ``1 <= min_objects <= max_objects <= 9``.

    Returns
    -------
    ShapesScenes
        Images, and per image the boxes, labels and masks of its objects.

    Raises
    ------
    InvalidParameterError
        If a parameter is not an int in its range.

    Examples
    --------
    >>> scenes = make_shapes_scenes(4, seed=0, size=48)
    >>> scenes.images.shape, len(scenes)
    (torch.Size([4, 3, 48, 48]), 4)
    >>> k = len(scenes.labels[0])
    >>> scenes.boxes[0].shape == (k, 4) and scenes.masks[0].shape == (k, 48, 48)
    True
    """
    n = check_int(n, "n", "make_shapes_scenes", low=1)
    seed = check_int(seed, "seed", "make_shapes_scenes", low=0)
    size = check_int(size, "size", "make_shapes_scenes", low=48)
    cells = _GRID * _GRID
    for name, value in [("min_objects", min_objects), ("max_objects", max_objects)]:
        check_param(value, name, "make_shapes_scenes", [Interval(int, 1, cells)])
    if min_objects > max_objects:
        raise InvalidParameterError(
            "The 'min_objects' parameter of make_shapes_scenes must be at most 'max_objects'. "
            f"Got min_objects={min_objects} and max_objects={max_objects} instead."
        )
    gen = torch.Generator().manual_seed(seed)

    # Per-image draws: object count, cells, background.
    counts = torch.randint(min_objects, max_objects + 1, (n,), generator=gen)
    cell_order = torch.rand((n, cells), generator=gen).argsort(dim=1)
    bg_colour = torch.rand((n, 3), generator=gen)
    angle = _uniform((n,), 0.0, 2 * torch.pi, gen)
    gradient = _uniform((n, 3), -_GRADIENT_AMPLITUDE, _GRADIENT_AMPLITUDE, gen)
    # Per-object draws, objects of image i in its first counts[i] cells.
    owner = torch.repeat_interleave(torch.arange(n), counts)
    slot = torch.arange(len(owner)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    cell = cell_order[owner, slot]
    n_objects = len(owner)
    labels = torch.randint(len(CLASS_NAMES), (n_objects,), generator=gen)
    cell_side = size / _GRID
    scale = _uniform((n_objects,), _MIN_SCALE * cell_side, _MAX_SCALE * cell_side, gen)
    free = cell_side - 2 * _MARGIN - scale  # room left for the square inside its cell
    corner = torch.stack([cell % _GRID, cell // _GRID], dim=1) * cell_side + _MARGIN
    centre = corner + scale[:, None] / 2 + torch.rand((n_objects, 2), generator=gen) * free[:, None]
    gap = _uniform((n_objects, 3), _MIN_COLOUR_GAP, 1.0 - _MIN_COLOUR_GAP, gen)
    obj_colour = torch.remainder(bg_colour[owner] + gap, 1.0)

    images = torch.empty((n, 3, size, size))
    masks = torch.empty((n_objects, size, size), dtype=torch.bool)
    first = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        objs = slice(int(first[start]), int(first[stop]))
        mask = _shape_masks(labels[objs], centre[objs], scale[objs], size)
        # Objects never overlap: which[i, y, x] is 1 + the index (in objs) of the object that
        # covers the pixel, 0 for background.
        number = torch.arange(1, mask.shape[0] + 1, dtype=torch.int32)
        which = torch.zeros((stop - start, size, size), dtype=torch.int32)
        which.index_add_(0, owner[objs] - start, mask * number[:, None, None])
        palette = torch.cat([torch.zeros((1, 3)), obj_colour[objs]])
        painted = palette[which.long()].permute(0, 3, 1, 2)
        background = _background(
            bg_colour[start:stop], angle[start:stop], gradient[start:stop], size, gen
        )
        chunk = torch.where(which[:, None] > 0, painted, background)
        chunk += _uniform(chunk.shape, -_PIXEL_NOISE, _PIXEL_NOISE, gen)
        images[start:stop] = chunk.clamp_(0.0, 1.0)
        masks[objs] = mask

    boxes = _tight_boxes(masks)
    sizes = counts.tolist()
    return ShapesScenes(
        images=images,
        boxes=list(torch.split(boxes, sizes)),
        labels=list(torch.split(labels, sizes)),
        masks=list(torch.split(masks, sizes)),
        class_names=CLASS_NAMES,
    )


def _tight_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(M, 4)`` float32 boxes ``x0, y0, x1, y1`` (pixel edges) of non-empty ``(M, H, W)``."""
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    width, height = cols.shape[1], rows.shape[1]
    x0 = cols.int().argmax(dim=1)
    x1 = width - cols.flip(1).int().argmax(dim=1)
    y0 = rows.int().argmax(dim=1)
    y1 = height - rows.flip(1).int().argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).float()
