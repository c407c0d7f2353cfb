"""Constraints that several methods' parameters share (see :mod:`faithmap.core.constraints`).

A method declares its fields' constraints as data in ``parameter_constraints``; the kinds of
value that recur across methods (a removal fill, a score activation, a region partition, a
channel reduction) are spelled once here, so every method checks them the same way and says the
same thing when one is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from torch import Tensor

from faithmap.core.constraints import CALLABLE, ConstraintList, Interval, Satisfies, options
from faithmap.core.method import REDUCE, Reduce
from faithmap.core.model import Activation
from faithmap.core.regions import Regions

__all__ = [
    "ACTIVATION",
    "FILL",
    "REDUCE",
    "REGIONS",
    "Activation",
    "Fill",
    "FillSpec",
    "Reduce",
    "RegionsLike",
    "is_region_spec",
]

Fill = Literal["constant", "mean", "blur", "noise"]
"""The named removal fills (those of :class:`faithmap.core.removal.Removal`)."""
FillSpec = Fill | float | Callable[[Tensor], Tensor]
"""What a removed feature becomes: a named fill, a constant, or a function of the inputs."""
RegionsLike = str | Regions | Tensor
"""A region partition: a spec string, a :class:`~faithmap.Regions`, or an integer label map."""

ACTIVATION = options(get_args(Activation))
FILL: ConstraintList = [options(get_args(Fill)), Interval(float), CALLABLE]
"""A removal fill: one of the named fills, a finite number (a constant) or a callable."""


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
