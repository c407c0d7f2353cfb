"""Features as regions: a partition of each image, or of each row's columns, into labelled parts.

A :class:`Regions` holds one integer label map per image (or one label per column of a tabular
row ``(N, F)``: feature groups); every perturbation method and metric that removes "features"
removes whole regions, turning a keep-vector over regions into a pixel (or column) mask with a
single gather.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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
        far fewer than asked (see :func:`slic`)."""
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


def columns(inputs: Tensor) -> Regions:
    """Every column of rows ``(N, F)`` its own feature."""
    n, count = inputs.shape
    labels = torch.arange(count, device=inputs.device).expand(n, count)
    return Regions(labels, count, "columns", channel_axis=False)


def windows(inputs: Tensor, size: int) -> Regions:
    """Contiguous windows of ``size`` columns of rows ``(N, F)``; the last may be shorter."""
    check_int(size, "size", "windows", low=1)
    n, count = inputs.shape
    labels = (torch.arange(count, device=inputs.device) // size).expand(n, count)
    return Regions(labels, int(labels.max()) + 1, f"windows:{size}", channel_axis=False)


def feature_groups(groups: Sequence[Sequence[int]], inputs: Tensor) -> Regions:
    """Feature groups of rows ``(N, F)`` from a list of column-index lists.

    Each group (for example the columns of one one-hot encoded variable) becomes one feature,
    removed and attributed as a whole; a column named in no group is a feature on its own.
    Labels follow the groups in the order given, then the remaining columns in column order.

    Examples
    --------
    >>> regions = feature_groups([[1, 2, 3], [5, 0]], torch.zeros(2, 7))
    >>> regions.count, regions.labels[0].tolist()
    (4, [1, 0, 0, 0, 2, 1, 3])
    """
    count = int(inputs.shape[1])
    labels = torch.full((count,), -1, dtype=torch.long)
    for number, group in enumerate(groups):
        members = _column_indices(group, count, number)
        taken = [column for column in members if labels[column] >= 0]
        if taken:
            raise InvalidParameterError(
                f"Feature groups must not overlap: the columns {taken} of group {number} are "
                "already in an earlier group. Give each column to at most one group."
            )
        labels[members] = number
    rest = labels < 0
    labels[rest] = len(groups) + torch.arange(int(rest.sum()))
    expanded = labels.to(inputs.device).expand(inputs.shape[0], count)
    return Regions(expanded, int(labels.max()) + 1, "groups", channel_axis=False)


def _column_indices(group: Any, count: int, number: int) -> list[int]:
    if isinstance(group, str) or not isinstance(group, Sequence | np.ndarray | Tensor):
        raise InvalidParameterError(
            f"Each feature group must be a list of column indices. Group {number} is "
            f"{group!r} instead."
        )
    members = [int(c) for c in group] if all(_is_int(c) for c in group) else None
    if not members:
        raise InvalidParameterError(
            f"Each feature group must be a non-empty list of int column indices. Group {number} "
            f"is {list(group)!r} instead."
        )
    outside = [c for c in members if not 0 <= c < count]
    if outside or len(set(members)) != len(members):
        problem = f"columns {outside} outside [0, {count})" if outside else "repeated columns"
        raise InvalidParameterError(
            f"Feature group {number} of rows with {count} columns has {problem}. Got "
            f"{members} instead."
        )
    return members


def _is_int(value: Any) -> bool:
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and np.issubdtype(value.dtype, np.integer)
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def row_regions(spec: Any, inputs: Tensor) -> Regions:
    """Regions of rows ``(N, F)``: see :func:`make_regions`."""
    if isinstance(spec, Regions):
        if tuple(spec.labels.shape) != tuple(inputs.shape):
            raise ShapeError(
                f"The feature labels must have shape {tuple(inputs.shape)} (one per column) for "
                f"rows of shape {tuple(inputs.shape)}. Got {tuple(spec.labels.shape)} instead."
            )
        return spec if not spec.channel_axis else Regions(spec.labels, spec.count, spec.kind, False)
    if isinstance(spec, np.ndarray):
        spec = _label_tensor(spec)
    if isinstance(spec, Tensor):
        if spec.is_floating_point() or spec.is_complex():
            raise InvalidParameterError(
                "A label array for rows must hold an integer group per column. Got a "
                f"{spec.dtype} array instead."
            )
        labels = spec.long().to(inputs.device)
        if labels.dim() == 1:
            labels = labels.expand(inputs.shape[0], *labels.shape)
        if tuple(labels.shape) != tuple(inputs.shape):
            raise ShapeError(
                f"A label array for rows of shape {tuple(inputs.shape)} must have shape "
                f"({inputs.shape[1]},) or {tuple(inputs.shape)}, one group per column. Got "
                f"{tuple(spec.shape)} instead."
            )
        _, consecutive = torch.unique(labels, return_inverse=True)
        return Regions(consecutive, int(consecutive.max()) + 1, "labels", channel_axis=False)
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        return feature_groups(spec, inputs)
    name, _, arg = str(spec).partition(":")
    if name in ("pixels", "columns") and not arg:
        return columns(inputs)
    if name == "windows" and arg.isdigit() and int(arg) >= 1:
        return windows(inputs, int(arg))
    hint = " ('patches:K' cuts images; for rows use 'windows:K')" if name == "patches" else ""
    raise InvalidParameterError(
        "The 'regions' parameter for rows (N, F) must be 'columns', 'windows:K' (K contiguous "
        "columns per feature), a list of column-index lists (feature groups), an (F,) integer "
        f"label array or a Regions object. Got {spec!r} instead{hint}."
    )


def _label_tensor(array: np.ndarray) -> Tensor:
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise InvalidParameterError(
            f"A region label array must hold integers. Got a numpy array of {array.dtype}."
        )
    return torch.from_numpy(np.ascontiguousarray(array).astype(np.int64))


def make_regions(spec: Any, inputs: Tensor) -> Regions:
    """Regions from a spec.

    For images ``(N, C, H, W)``: ``"pixels"``, ``"patches"``/``"patches:K"``,
    ``"slic"``/``"slic:K"``, an existing :class:`Regions`, or an ``(N, H, W)``/``(H, W)``
    integer label map.

    For tabular rows ``(N, F)`` (feature groups; attributions stay ``(N, F)``, every column
    painted with its group's value): ``"columns"`` (or ``"pixels"``: each column its own
    feature), ``"windows:K"`` (contiguous windows of ``K`` columns), a list of column-index
    lists (:func:`feature_groups`, e.g. one-hot blocks), an ``(F,)`` or ``(N, F)`` integer
    label array (one group per column, as Captum's ``feature_mask``), or a :class:`Regions`.

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
        spec = _label_tensor(spec)
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
            and all(_is_int(column) for column in group)
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
