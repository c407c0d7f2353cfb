"""Features as regions: partitions of images into labelled parts, and the ``regions`` specs.

A :class:`Regions` (:mod:`faithmap.core.partition`) holds one integer label map per image (or one
label per column of a tabular row ``(N, F)``); every perturbation method and metric that removes
"features" removes whole regions. This module makes the partitions of images (every pixel, square
patches, SLIC superpixels, patches grouped by a prior map), resolves a ``regions`` spec for images
or rows (:func:`make_regions`; rows: :mod:`faithmap.core.row_regions`) and holds the parameter
constraints ``REGIONS`` and ``UNIT``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from faithmap.core.constraints import ConstraintList, Satisfies
from faithmap.core.partition import Regions as Regions
from faithmap.core.partition import label_tensor
from faithmap.core.row_regions import columns as columns
from faithmap.core.row_regions import feature_groups as feature_groups
from faithmap.core.row_regions import is_column_index, row_regions
from faithmap.core.row_regions import windows as windows
from faithmap.core.validation import check_float, check_int
from faithmap.errors import InvalidParameterError, ShapeError


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
    inputs: Tensor, n_segments: int = 49, *, compactness: float = 30.0, sigma: float = 1.0
) -> Regions:
    """SLIC superpixels from scikit-image, computed per image on the CPU.

    ``compactness`` 30 (scikit-image's default is 10): on colour images SLIC works in Lab,
    where 10 lets texture win, and on noisy photographs the connectivity step then merges
    nearly everything (3 of 49 regions on 224 x 224 noise); 30 gives 49 there and still follows
    object edges on the built-in shapes (45-49 of 49).

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
    regions = Regions(labels, int(labels.max()) + 1, f"slic:{n_segments}")
    warn_if_few(
        regions,
        n_segments,
        f"slic(n_segments={n_segments}, compactness={compactness:g})",
        f"Raise the compactness (for example regions=faithmap.core.regions.slic(x, "
        f"{n_segments}, compactness={max(30.0, 3 * compactness):g})), or use a regular "
        "grid, regions='patches:K'.",
    )
    return regions


FEW_REGIONS_SHARE = 0.5
"""A partition with fewer than this share of the regions asked for warns (:func:`warn_if_few`)."""


def warn_if_few(regions: Regions, asked: int, made_by: str, fix: str) -> None:
    """Warn (``UserWarning``) when some image got fewer than half the ``asked`` regions.

    A method over few regions is quietly coarse (KernelSHAP over 3 SLIC regions enumerates 8
    coalitions and paints 3 values), so the count asked and obtained are named with ``fix``.
    """
    obtained = regions.obtained
    fewest = int(obtained.min()) if obtained.numel() else asked
    if fewest < FEW_REGIONS_SHARE * asked:
        where = int(obtained.argmin())
        warnings.warn(
            f"{made_by} asked for {asked} regions but obtained {fewest} (image {where}; "
            f"{int(obtained.max())} at most over the batch); methods over these regions will be "
            f"coarse. {fix}",
            UserWarning,
            stacklevel=3,
        )


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


def make_regions(spec: Any, inputs: Tensor) -> Regions:
    """Regions from a spec.

    For images ``(N, C, H, W)``: ``"pixels"``, ``"patches"``/``"patches:K"``,
    ``"slic"``/``"slic:K"``, an existing :class:`Regions`, or an ``(N, H, W)``/``(H, W)``
    integer label map.

    For tabular rows ``(N, F)`` (feature groups; attributions stay ``(N, F)``, every column
    painted with its group's value): ``"columns"`` (or ``"pixels"``: each column its own
    feature), ``"windows:K"`` (contiguous windows of ``K`` columns), a list of column-index
    lists (:func:`~faithmap.core.row_regions.feature_groups`, e.g. one-hot blocks), an
    ``(F,)`` or ``(N, F)`` integer label array (one group per column, as Captum's
    ``feature_mask``), or a :class:`Regions`.

    Examples
    --------
    >>> make_regions("windows:2", torch.zeros(1, 5)).labels.tolist()
    [[0, 0, 1, 1, 2]]
    """
    if inputs.dim() == 2:
        return row_regions(spec, inputs)
    if isinstance(spec, Regions):
        return _checked(spec, inputs)
    if isinstance(spec, np.ndarray):
        spec = label_tensor(spec)
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


RegionsLike = str | Regions | Tensor | np.ndarray | Sequence[Sequence[int]]
"""A region partition: a spec string, a :class:`~faithmap.Regions`, an integer label map, or (for
rows) a list of column-index lists."""


def is_region_spec(value: Any) -> bool:
    """Whether ``value`` names or holds a partition :func:`~faithmap.core.regions.make_regions`
    understands: ``"pixels"``, ``"patches"``, ``"patches:K"``, ``"slic"``, ``"slic:K"``,
    ``"columns"``, ``"windows:K"`` (``K`` a positive int), a :class:`~faithmap.Regions`, a label
    map ``(F,)``, ``(H, W)`` or ``(N, H, W)``, or a list of column-index lists."""
    if isinstance(value, Regions):
        return True
    if isinstance(value, Tensor | np.ndarray):
        return value.ndim in (1, 2, 3)
    if isinstance(value, list | tuple):
        return len(value) > 0 and all(
            isinstance(group, list | tuple | range)
            and len(group) > 0
            and all(is_column_index(column) for column in group)
            for group in value
        )
    if not isinstance(value, str):
        return False
    name, colon, arg = value.partition(":")
    if name in ("pixels", "columns"):
        return not colon
    if name == "windows":
        return arg.isdigit() and int(arg) >= 1
    if name not in ("patches", "slic"):
        return False
    return not colon or (arg.isdigit() and int(arg) >= 1)


REGIONS: ConstraintList = [
    Satisfies(
        is_region_spec,
        "'pixels', 'patches', 'patches:K', 'slic', 'slic:K', a Regions object or an integer "
        "label map (H, W) or (N, H, W); for rows (N, F): 'columns', 'windows:K', a list of "
        "column-index lists or an (F,) integer label array",
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
