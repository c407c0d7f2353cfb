"""``Regions``: a partition of each image, or of each row's columns, into labelled parts.

The type every perturbation method and metric removes "features" with: one integer label map per
image (or one label per column of a tabular row ``(N, F)``) and what a partition does with them,
turning a keep-vector over regions into a pixel (or column) mask with a single gather, pooling an
attribution map per region and painting region values back. The partitions themselves are made
in :mod:`faithmap.core.regions` (images, specs) and :mod:`faithmap.core.row_regions` (rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from faithmap.errors import InvalidParameterError


@dataclass(frozen=True)
class Regions:
    """A partition of ``N`` images (or rows) into at most ``count`` regions.

    Attributes
    ----------
    labels : Tensor
        ``(N, H, W)`` int64 label map with values in ``[0, count)``; an image with fewer regions
        simply leaves the higher labels unused. For tabular rows ``(N, F)``: ``(N, F)``, the
        group of each column.
    count : int
        The number of region labels ``R``.
    kind : str
        How the partition was made (``"pixels"``, ``"patches:8"``, ``"slic:49"``,
        ``"columns"``, ``"windows:4"``, ``"groups"``, ...).
    channel_axis : bool, default=True
        Whether the inputs have a channel axis that masks keep as a singleton (images
        ``(N, C, H, W)``: masks ``(B, 1, H, W)``); ``False`` for rows ``(N, F)``, whose masks
        are ``(B, F)``.
    """

    labels: Tensor
    count: int
    kind: str
    channel_axis: bool = True

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def obtained(self) -> Tensor:
        """The number of regions each image (or row) really has, ``(N,)`` int64: SLIC can return
        far fewer than asked (see :func:`~faithmap.core.regions.slic`)."""
        flat = self.labels.flatten(1)
        present = torch.zeros(flat.shape[0], self.count, dtype=torch.bool, device=flat.device)
        present.scatter_(1, flat, True)
        return present.sum(1)

    def subset(self, samples: Tensor) -> Regions:
        """The partition of the images ``samples``."""
        return Regions(self.labels[samples], self.count, self.kind, self.channel_axis)

    def to_pixels(self, keep: Tensor, samples: Tensor) -> Tensor:
        """Pixel keep-masks ``(B, 1, H, W)`` from region keep-vectors ``keep`` ``(B, count)``
        (column masks ``(B, F)`` for rows).

        Row ``b`` uses the label map of image ``samples[b]``; one gather, on ``keep``'s device.
        """
        labels = self.labels[samples]
        flat = keep.gather(1, labels.flatten(1))
        if not self.channel_axis:
            return flat.view(labels.shape)
        return flat.view(labels.shape[0], 1, *labels.shape[1:])

    def sizes(self) -> Tensor:
        """Pixels per region, ``(N, count)``."""
        flat = self.labels.flatten(1)
        sizes = torch.zeros(flat.shape[0], self.count, device=flat.device)
        return sizes.scatter_add_(1, flat, torch.ones_like(flat, dtype=sizes.dtype))

    def pool(self, attributions: Tensor) -> Tensor:
        """Mean attribution of each region, ``(N, count)``; channels are summed first."""
        values = attributions.sum(1) if attributions.dim() == 4 else attributions
        flat, labels = values.flatten(1).float(), self.labels.flatten(1)
        totals = torch.zeros(flat.shape[0], self.count, device=flat.device)
        totals.scatter_add_(1, labels, flat)
        return totals / self.sizes().clamp_min(1)

    def paint(self, values: Tensor) -> Tensor:
        """Pixel map ``(N, 1, H, W)`` giving every pixel the value of its region (``(N, F)``
        giving every column the value of its group, for rows)."""
        return self.to_pixels(values, torch.arange(len(self), device=values.device))


def label_tensor(array: np.ndarray) -> Tensor:
    """An integer (or boolean) numpy label array as an int64 tensor; an error otherwise."""
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise InvalidParameterError(
            f"A region label array must hold integers. Got a numpy array of {array.dtype}."
        )
    return torch.from_numpy(np.ascontiguousarray(array).astype(np.int64))
