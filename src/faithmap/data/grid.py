"""Grids of shapes: ``scale x scale`` mosaics whose class is known cell by cell.

Each grid tiles :func:`~faithmap.data.make_shapes` images of *distinct* classes, every one
classified correctly and with high confidence by the model the grid is made for. The evidence
for "class ``c`` at cell ``i``" is then, by construction, in cell ``i``: the ground truth of the
grid pointing game, DiFull and DiPart (:mod:`faithmap.zoo.grid_models`,
:mod:`faithmap.metrics.grid`). Cells are numbered row by row: cell ``i`` is at row
``i // scale``, column ``i % scale``.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022
(the grid pointing game; the images of a grid are those every model classifies correctly with
confidence >= ``conf_threshold``, tiled in a random permutation of distinct classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.model import Model, ModelLike
from faithmap.core.validation import check_float, check_int
from faithmap.data.synthetic import CLASS_NAMES, make_shapes
from faithmap.errors import InvalidParameterError

__all__ = ["GridBatch", "cell_masks", "make_grid"]

_BATCH = 64
"""Rows per model call when classifying the pool (a plain module's batch size is not measured)."""


@dataclass(frozen=True)
class GridBatch:
    """Grids of shapes, the class of every cell, and each cell's mask.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, scale * size, scale * size)`` float32 in ``[0, 1]``.
    labels : Tensor
        ``(N, scale * scale)`` int64: the class of each cell, row by row.
    cells : Tensor
        ``(scale * scale, 1, scale * size, scale * size)`` bool: True on cell ``i``'s pixels.
    object_masks : Tensor
        ``(N, scale * scale, scale * size, scale * size)`` bool: True on cell ``i``'s object.
    sources : Tensor
        ``(N, scale * scale)`` int64: which :func:`make_shapes` image fills each cell (an index
        into the pool drawn with ``seed``).
    scale : int
        Cells per side.
    class_names : tuple of str
    """

    images: Tensor
    labels: Tensor
    cells: Tensor
    object_masks: Tensor
    sources: Tensor
    scale: int
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def masks(self, cell: int) -> Tensor:
        """``(N, 1, H, W)`` bool: cell ``cell`` of every grid (the ground truth for that cell)."""
        cell = check_int(cell, "cell", "GridBatch.masks", low=0)
        if cell >= self.scale * self.scale:
            raise InvalidParameterError(
                f"The 'cell' parameter of GridBatch.masks must be below {self.scale**2} for a "
                f"{self.scale} x {self.scale} grid. Got {cell} instead."
            )
        return self.cells[cell : cell + 1].expand(len(self), -1, -1, -1)


def cell_masks(scale: int, size: int) -> Tensor:
    """``(scale * scale, 1, scale * size, scale * size)`` bool masks of the cells, row by row.

    Examples
    --------
    >>> cell_masks(2, 1)[:, 0].int().tolist()
    [[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [1, 0]], [[0, 0], [0, 1]]]
    """
    scale = check_int(scale, "scale", "cell_masks", low=1)
    size = check_int(size, "size", "cell_masks", low=1)
    masks = torch.zeros((scale * scale, 1, scale * size, scale * size), dtype=torch.bool)
    for i in range(scale * scale):
        row, col = divmod(i, scale)
        masks[i, 0, row * size : (row + 1) * size, col * size : (col + 1) * size] = True
    return masks


def _tile(cells: Tensor, scale: int) -> Tensor:
    """``(N, scale * scale, C, h, w)`` cells → ``(N, C, scale * h, scale * w)`` grids."""
    n, _, channels, h, w = cells.shape
    rows = cells.reshape(n, scale, scale, channels, h, w).permute(0, 3, 1, 4, 2, 5)
    return rows.reshape(n, channels, scale * h, scale * w)


def make_grid(
    model: ModelLike,
    n: int,
    *,
    scale: int = 2,
    seed: int = 1,
    size: int = 64,
    conf_threshold: float = 0.99,
    pool: int = 300,
) -> GridBatch:
    """Draw `n` grids of ``scale x scale`` shapes of distinct classes, all confidently classified.

    A pool of ``pool`` :func:`make_shapes` images (``seed``) is classified by ``model``; the
    images it classifies correctly with softmax confidence ``>= conf_threshold`` are eligible.
    Each grid takes a random permutation of distinct classes (seeded) and, for each cell, a
    random eligible image of that cell's class.

    Parameters
    ----------
    model : nn.Module, callable or Model
        The classifier of :func:`make_shapes` images that the grids are made for.
    n : int
        Number of grids, >= 1.
    scale : int, default=2
        Cells per side, >= 2; ``scale * scale`` must not exceed the 6 classes (so 2 with the
        built-in shapes: distinct classes are what makes the cell of each class known).
    seed : int, default=1
        Seed of the pool and of the draws (the reference script's default is 1).
    size : int, default=64
        Side of each cell, in pixels (the built-in models are trained at 64).
    conf_threshold : float, default=0.99
        The least softmax confidence of an eligible image, in ``[0, 1)``.
    pool : int, default=300
        Images drawn and classified to choose from.

    Returns
    -------
    GridBatch

    Raises
    ------
    InvalidParameterError
        If a parameter is out of range, ``scale * scale`` exceeds the classes, or some class has
        no eligible image in the pool (lower ``conf_threshold`` or draw a larger ``pool``).

    References
    ----------
    Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
    """
    n = check_int(n, "n", "make_grid", low=1)
    scale = check_int(scale, "scale", "make_grid", low=2)
    seed = check_int(seed, "seed", "make_grid", low=0)
    size = check_int(size, "size", "make_grid", low=32)
    pool = check_int(pool, "pool", "make_grid", low=1)
    threshold = check_float(conf_threshold, "conf_threshold", "make_grid", low=0.0, high=1.0)
    n_classes = len(CLASS_NAMES)
    if scale * scale > n_classes:
        raise InvalidParameterError(
            f"The 'scale' parameter of make_grid gives {scale * scale} cells, more than the "
            f"{n_classes} classes, so the classes of a grid cannot be distinct. Use scale=2."
        )
    shapes = make_shapes(pool, seed=seed, size=size)
    wrapped = model if isinstance(model, Model) else Model(model, batch_size=_BATCH)
    probabilities = wrapped.outputs(shapes.images, activation="softmax")
    confidence, predicted = probabilities.max(dim=1)
    eligible = (predicted.cpu() == shapes.labels) & (confidence.cpu() >= threshold)
    by_class = [(eligible & (shapes.labels == k)).nonzero().flatten() for k in range(n_classes)]
    empty = [CLASS_NAMES[k] for k, found in enumerate(by_class) if len(found) == 0]
    if empty:
        raise InvalidParameterError(
            f"No image of class {', '.join(empty)} in the pool of {pool} is classified correctly "
            f"with confidence >= {threshold}. Lower 'conf_threshold' or draw a larger 'pool'."
        )
    gen = torch.Generator().manual_seed(seed)
    labels = torch.stack(
        [torch.randperm(n_classes, generator=gen)[: scale * scale] for _ in range(n)]
    )
    counts = torch.tensor([len(found) for found in by_class])
    picks = (torch.rand(labels.shape, generator=gen) * counts[labels]).long()
    sources = torch.stack(
        [
            torch.stack([by_class[int(k)][int(j)] for k, j in zip(row, pick, strict=True)])
            for row, pick in zip(labels, picks, strict=True)
        ]
    )
    images = _tile(shapes.images[sources], scale)
    objects = _tile(shapes.masks[sources], scale)[:, 0]
    cells = cell_masks(scale, size)
    object_masks = objects[:, None] & cells[None, :, 0]
    return GridBatch(
        images=images,
        labels=labels,
        cells=cells,
        object_masks=object_masks,
        sources=sources,
        scale=scale,
        class_names=CLASS_NAMES,
    )
