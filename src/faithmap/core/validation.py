"""Checks on user input, raising :mod:`faithmap.errors` with messages that say how to fix it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError


def check_int(value: Any, name: str, owner: str, *, low: int | None = None) -> int:
    """``value`` as an int, at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be an int{bound}. Got {value!r} instead."
        )
    return value


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
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = value == value and abs(value) != float("inf")
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
    if not ok:
        lo = "" if low is None else (f" > {low}" if low_open else f" >= {low}")
        hi = "" if high is None else f" <= {high}"
        joint = " and" if lo and hi else ""
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a finite number{lo}{joint}{hi}. "
            f"Got {value!r} instead."
        )
    return float(value)


def check_choice(value: Any, name: str, owner: str, choices: Collection[str]) -> str:
    """``value`` as one of ``choices``."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be one of {valid}. Got {value!r} instead."
        )
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
