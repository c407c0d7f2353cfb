"""Features as regions: a partition of each image into labelled parts.

A :class:`Regions` holds one integer label map per image; every perturbation method and metric
that removes "features" removes whole regions, turning a keep-vector over regions into a pixel
mask with a single gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from faithmap.core.constraints import ConstraintList, Satisfies
from faithmap.core.validation import check_float, check_int
from faithmap.errors import InvalidParameterError, ShapeError


@dataclass(frozen=True)
class Regions:
    """A partition of ``N`` images into at most ``count`` regions.

    Attributes
    ----------
    labels : Tensor
        ``(N, H, W)`` int64 label map with values in ``[0, count)``; an image with fewer regions
        simply leaves the higher labels unused.
    count : int
        The number of region labels ``R``.
    kind : str
        How the partition was made (``"pixels"``, ``"patches:8"``, ``"slic:49"``, ...).
    """

    labels: Tensor
    count: int
    kind: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, samples: Tensor) -> Regions:
        """The partition of the images ``samples``."""
        return Regions(self.labels[samples], self.count, self.kind)

    def to_pixels(self, keep: Tensor, samples: Tensor) -> Tensor:
        """Pixel keep-masks ``(B, 1, H, W)`` from region keep-vectors ``keep`` ``(B, count)``.

        Row ``b`` uses the label map of image ``samples[b]``; one gather, on ``keep``'s device.
        """
        labels = self.labels[samples]
        flat = keep.gather(1, labels.flatten(1))
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
        """Pixel map ``(N, 1, H, W)`` giving every pixel the value of its region."""
        return self.to_pixels(values, torch.arange(len(self), device=values.device))


def pixels(inputs: Tensor) -> Regions:
    """Every pixel its own region."""
    n, _, height, width = inputs.shape
    labels = torch.arange(height * width, device=inputs.device).view(1, height, width)
    return Regions(labels.expand(n, height, width), height * width, "pixels")


def patch_grid(inputs: Tensor, size: int = 8) -> Regions:
    """Square patches of ``size`` pixels, row-major; border patches may be smaller."""
    check_int(size, "size", "patch_grid", low=1)
    n, _, height, width = inputs.shape
    rows = torch.arange(height, device=inputs.device) // size
    cols = torch.arange(width, device=inputs.device) // size
    per_row = -(-width // size)
    labels = (rows[:, None] * per_row + cols[None, :]).expand(n, height, width)
    return Regions(labels, int(labels.max()) + 1, f"patches:{size}")


def slic(
    inputs: Tensor, n_segments: int = 49, *, compactness: float = 10.0, sigma: float = 1.0
) -> Regions:
    """SLIC superpixels from scikit-image, computed per image on the CPU.

    References
    ----------
    Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel Methods",
    IEEE TPAMI 34(11), 2012.
    """
    from skimage.segmentation import slic as skimage_slic

    check_int(n_segments, "n_segments", "slic", low=1)
    check_float(compactness, "compactness", "slic", low=0.0, low_open=True)
    check_float(sigma, "sigma", "slic", low=0.0)
    images = inputs.detach().float().cpu()
    if images.shape[1] not in (1, 3):
        raise ShapeError(
            f"SLIC needs images with 1 or 3 channels. Got {images.shape[1]} channels instead; "
            "use regions='patches' for other inputs."
        )
    maps = []
    for image in images:
        array = image.permute(1, 2, 0).numpy().astype(np.float64)
        low, high = array.min(), array.max()
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        segments = skimage_slic(
            array,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma,
            start_label=0,
            channel_axis=-1 if array.shape[2] == 3 else None,
        )
        if array.shape[2] == 1:
            segments = segments.reshape(array.shape[:2])
        _, consecutive = np.unique(segments, return_inverse=True)
        maps.append(torch.from_numpy(consecutive.reshape(segments.shape).astype(np.int64)))
    labels = torch.stack(maps).to(inputs.device)
    return Regions(labels, int(labels.max()) + 1, f"slic:{n_segments}")


def prior_groups(inputs: Tensor, prior: Tensor, *, size: int = 8, group: int = 4) -> Regions:
    """Patches grouped by a prior saliency map: SMDL's "prior saliency map + patch" division.

    The image is cut into square patches of ``size`` pixels (:func:`patch_grid`); the patches
    are ranked by their mean ``prior`` value (channels summed), most salient first, and every
    ``group`` consecutive patches of that ranking form one region (region 0: the ``group`` most
    salient patches). Ties keep the patches' row-major order.

    Parameters
    ----------
    inputs : Tensor
        Images ``(N, C, H, W)``.
    prior : Tensor
        Another method's attributions for them, ``(N, 1 or C, H, W)``.
    size : int, default=8
        Patch side in pixels.
    group : int, default=4
        Patches per region.

    References
    ----------
    Chen et al., "Less is More: Fewer Interpretable Region via Submodular Subset Selection",
    ICLR 2024 (``partition_by_mulit_grad`` in its code).
    """
    check_int(group, "group", "prior_groups", low=1)
    cells = patch_grid(inputs, size)
    expected = (inputs.shape[0], inputs.shape[2], inputs.shape[3])
    if prior.dim() != 4 or (prior.shape[0], *prior.shape[2:]) != expected:
        raise ShapeError(
            f"The prior map must have shape ({expected[0]}, 1, {expected[1]}, {expected[2]}) for "
            f"inputs of shape {tuple(inputs.shape)}. Got {tuple(prior.shape)} instead."
        )
    means = cells.pool(prior.to(inputs.device))
    order = means.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(cells.count, device=order.device).expand_as(order)
    )
    labels = (rank // group).gather(1, cells.labels.flatten(1)).view_as(cells.labels)
    return Regions(labels, -(-cells.count // group), f"prior:{size}x{group}")


def make_regions(spec: str | Regions | Tensor, inputs: Tensor) -> Regions:
    """Regions from a spec: ``"pixels"``, ``"patches"``/``"patches:K"``, ``"slic"``/``"slic:K"``,
    an existing :class:`Regions`, or an ``(N, H, W)``/``(H, W)`` integer label map."""
    if isinstance(spec, Regions):
        return _checked(spec, inputs)
    if isinstance(spec, Tensor):
        labels = spec.long().to(inputs.device)
        if labels.dim() == 2:
            labels = labels.expand(inputs.shape[0], *labels.shape)
        _, consecutive = torch.unique(labels, return_inverse=True)
        return _checked(Regions(consecutive, int(consecutive.max()) + 1, "labels"), inputs)
    name, _, arg = str(spec).partition(":")
    try:
        number = int(arg) if arg else None
    except ValueError:
        number = -1
    if name == "pixels" and not arg:
        return pixels(inputs)
    if name == "patches" and number != -1:
        return patch_grid(inputs, number if number is not None else 8)
    if name == "slic" and number != -1:
        return slic(inputs, number if number is not None else 49)
    raise InvalidParameterError(
        "The 'regions' parameter must be 'pixels', 'patches', 'patches:K', 'slic', 'slic:K', a "
        f"Regions object or an integer label map. Got {spec!r} instead."
    )


def _checked(regions: Regions, inputs: Tensor) -> Regions:
    expected = (inputs.shape[0], *inputs.shape[2:])
    if tuple(regions.labels.shape) != expected:
        raise ShapeError(
            f"The region label map must have shape {expected} for inputs of shape "
            f"{tuple(inputs.shape)}. Got {tuple(regions.labels.shape)} instead."
        )
    return regions


RegionsLike = str | Regions | Tensor
"""A region partition: a spec string, a :class:`~faithmap.Regions`, or an integer label map."""


def is_region_spec(value: Any) -> bool:
    """Whether ``value`` names or holds a partition :func:`~faithmap.core.regions.make_regions`
    understands: ``"pixels"``, ``"patches"``, ``"patches:K"``, ``"slic"``, ``"slic:K"`` (``K``
    a positive int), a :class:`~faithmap.Regions` or a label map ``(H, W)`` / ``(N, H, W)``."""
    if isinstance(value, Regions):
        return True
    if isinstance(value, Tensor):
        return value.dim() in (2, 3)
    if not isinstance(value, str):
        return False
    name, colon, arg = value.partition(":")
    if name == "pixels":
        return not colon
    if name not in ("patches", "slic"):
        return False
    return not colon or (arg.isdigit() and int(arg) >= 1)


REGIONS: ConstraintList = [
    Satisfies(
        is_region_spec,
        "'pixels', 'patches', 'patches:K', 'slic', 'slic:K', a Regions object or an integer "
        "label map (H, W) or (N, H, W)",
        invalid="hexagons",
    )
]
"""A region partition (see :func:`is_region_spec`)."""


def is_unit_spec(value: Any) -> bool:
    """Whether ``value`` is ``"pixel"`` or a partition :func:`is_region_spec` accepts."""
    return (isinstance(value, str) and value == "pixel") or is_region_spec(value)


UNIT: ConstraintList = [
    Satisfies(
        is_unit_spec,
        "'pixel', 'patches:K', 'slic:K', a Regions object or an integer label map",
        invalid="hexagons",
    )
]
"""The constraint of a metric's ``unit`` parameter: what moves at once."""
