"""Checks on user input, raising :mod:`faithmap.errors` with messages that say how to fix it.

The scalar checks are the imperative form of :mod:`faithmap.core.constraints` (for functions
that declare no constraints), so every parameter message is written in one place.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor

from faithmap.core.constraints import Interval, Options, check_param
from faithmap.errors import ShapeError


def check_int(value: Any, name: str, owner: str, *, low: int | None = None) -> int:
    """``value`` as an int, at least ``low``."""
    check_param(value, name, owner, [Interval(int, low)])
    return int(value)


def check_float(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> float:
    """``value`` as a finite float within ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    check_param(value, name, owner, [Interval(float, low, high, "right" if low_open else "both")])
    return float(value)


def check_choice(value: Any, name: str, owner: str, choices: Collection[str]) -> str:
    """``value`` as one of ``choices``."""
    check_param(value, name, owner, [Options(tuple(choices))])
    return str(value)


def check_inputs(inputs: Any, owner: str, *, image: bool = False) -> Tensor:
    """A non-empty, finite, floating-point batch (batch first; ``(N, C, H, W)`` if ``image``)."""
    if not isinstance(inputs, Tensor):
        raise ShapeError(
            f"The inputs of {owner} must be a torch.Tensor with the batch first. Got "
            f"{type(inputs).__name__} instead; convert with "
            "torch.as_tensor(x, dtype=torch.float32)."
        )
    if image and inputs.dim() != 4:
        hint = " Add a batch dimension with x.unsqueeze(0)." if inputs.dim() == 3 else ""
        raise ShapeError(
            f"The inputs of {owner} must be a batch of images of shape (N, C, H, W). Got shape "
            f"{tuple(inputs.shape)} instead.{hint}"
        )
    if inputs.dim() < 2:
        raise ShapeError(
            f"The inputs of {owner} must have a batch dimension first, shape (N, ...). Got shape "
            f"{tuple(inputs.shape)} instead; use x.unsqueeze(0) for a single sample."
        )
    if inputs.shape[0] == 0:
        raise ShapeError(
            f"The inputs of {owner} are an empty batch (N = 0). Pass at least one sample."
        )
    if not inputs.is_floating_point():
        raise ShapeError(
            f"The inputs of {owner} must be floating point. Got dtype {inputs.dtype} instead; "
            "convert with x.float() (and scale images to the range the model expects)."
        )
    if not bool(torch.isfinite(inputs).all()):
        bad = sorted({int(i) for i in (~torch.isfinite(inputs)).flatten(1).any(1).nonzero()[:, 0]})
        raise ShapeError(
            f"The inputs of {owner} contain NaN or inf values (samples {bad[:10]}). "
            "Clean or drop those samples first."
        )
    return inputs
