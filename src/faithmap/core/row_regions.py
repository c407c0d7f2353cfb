"""Regions of tabular rows ``(N, F)``: which columns are removed and attributed together.

Every column its own feature (:func:`columns`), contiguous windows (:func:`windows`), feature
groups from column-index lists (:func:`feature_groups`, e.g. one-hot blocks) or an integer label
array; :func:`row_regions` resolves a ``regions`` spec for rows (see
:func:`~faithmap.core.regions.make_regions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from faithmap.core.partition import Regions, label_tensor
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError, ShapeError


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
    members = [int(c) for c in group] if all(is_column_index(c) for c in group) else None
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


def is_column_index(value: Any) -> bool:
    """Whether ``value`` is an int (Python, numpy or a 0-d integer tensor; not a bool)."""
    if isinstance(value, Tensor):
        return value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and np.issubdtype(value.dtype, np.integer)
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def row_regions(spec: Any, inputs: Tensor) -> Regions:
    """Regions of rows ``(N, F)``: see :func:`~faithmap.core.regions.make_regions`."""
    if isinstance(spec, Regions):
        if tuple(spec.labels.shape) != tuple(inputs.shape):
            raise ShapeError(
                f"The feature labels must have shape {tuple(inputs.shape)} (one per column) for "
                f"rows of shape {tuple(inputs.shape)}. Got {tuple(spec.labels.shape)} instead."
            )
        return spec if not spec.channel_axis else Regions(spec.labels, spec.count, spec.kind, False)
    if isinstance(spec, np.ndarray):
        spec = label_tensor(spec)
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
