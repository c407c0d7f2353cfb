"""Occlusion: the drop in the target score when a sliding window is removed."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Satisfies
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.scaling import grid_side

Size = int | tuple[int, int]
"""A window or stride: ``k`` (square) or ``(height, width)`` in pixels."""


def is_size(value: Any) -> bool:
    """Whether ``value`` is an int >= 1 or a pair of them (bools refused; a list pair is what a
    saved explanation's JSON config gives back)."""
    if isinstance(value, tuple | list):
        return len(value) == 2 and all(isinstance(v, int) and is_size(v) for v in value)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


SIZE = Satisfies(is_size, "an int >= 1 or a pair (height, width) of ints >= 1", invalid=0)


def pair(size: Size) -> tuple[int, int]:
    """``(height, width)`` of a window or stride given as an int or a pair."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def compact(size: tuple[int, int]) -> Size:
    """An int for a square size, else the pair (what the explanation records)."""
    return size[0] if size[0] == size[1] else size


def window_starts(size: int, window: int, stride: int) -> Tensor:
    """Top-left offsets along one axis; the last window may be cut by the border."""
    return torch.arange(math.ceil((size - window) / stride) + 1) * stride


@register_method("occlusion")
@dataclass(frozen=True, kw_only=True)
class Occlusion(Method):
    """Sliding-window occlusion (Zeiler and Fergus 2014).

    Each window covers all channels. A pixel's attribution is the mean, over the windows that
    cover it, of ``score(x) - score(x with the window removed)``.

    Parameters
    ----------
    window : int, (int, int) or None, default=None
        The window in pixels: a square side, or ``(height, width)``. ``None`` scales it to the
        input: a square of :func:`~faithmap.methods.scaling.grid_side` pixels,
        ``max(1, round(sqrt(H * W) / 8))`` (8 on 64 x 64, 28 on 224 x 224, 12 on 48 x 192, 1 on
        8 x 8), cut to the image's height or width if it is thinner; the explanation records the
        window used.
    stride : int, (int, int) or None, default=None
        Step between windows, as ``window``; ``None``: half the window (at least 1 pixel).
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What the occluded pixels become.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """

    image_only = True

    parameter_constraints: ClassVar[Constraints] = {
        "window": [None, SIZE],
        "stride": [None, SIZE],
        "fill": FILL,
        "activation": [ACTIVATION],
    }

    window: Size | None = None
    stride: Size | None = None
    fill: FillSpec = 0.0
    activation: Activation = "logits"

    def resolve(self, inputs: Tensor) -> Self:
        """The window and stride for these images: ``None`` scaled to them (see ``window``)."""
        height, width = (int(n) for n in inputs.shape[-2:])
        if self.window is None:
            side = grid_side(height, width)
            window = (min(side, height), min(side, width))
        else:
            window = pair(self.window)
        if window[0] > height or window[1] > width:
            fits = compact((min(window[0], height), min(window[1], width)))
            raise InvalidParameterError(
                f"The 'window' parameter of occlusion ({window[0]}x{window[1]} px) is larger "
                f"than the image ({height}x{width}). Use a window that fits, for example "
                f"window={fits!r}, or window=None to scale it to the input."
            )
        if self.stride is None:
            stride = (max(1, window[0] // 2), max(1, window[1] // 2))
        else:
            stride = pair(self.stride)
        return replace(self, window=compact(window), stride=compact(stride))

    def constant_map_advice(self, inputs: Tensor) -> str:
        window = self.resolve(inputs).window
        return (
            f"Use a smaller 'window' (now {window!r} for inputs of size "
            f"{inputs.shape[-2]}x{inputs.shape[-1]}; window=None scales it to the input), so "
            "that windows differ in what they remove; or check that the model's target output "
            "depends on the input."
        )

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        height, width = inputs.shape[-2:]
        resolved = self.resolve(inputs)
        assert resolved.window is not None and resolved.stride is not None  # set by resolve
        (window_h, window_w), (stride_h, stride_w) = pair(resolved.window), pair(resolved.stride)
        device = inputs.device
        tops = window_starts(height, window_h, stride_h).to(device)
        lefts = window_starts(width, window_w, stride_w).to(device)
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        count = tops.numel() * lefts.numel()

        def windows(indices: Tensor) -> Tensor:
            top, left = tops[indices // lefts.numel()], lefts[indices % lefts.numel()]
            inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + window_h)
            inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + window_w)
            return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(1)

        substrate = make_removal(self.fill).substrate(inputs)
        clean = model.score_rows(
            inputs.shape[0],
            1,
            lambda s, _: inputs[s],
            target,
            activation=self.activation,
            device=device,
        )
        occluded = score_removals(
            model,
            inputs,
            target,
            substrate,
            lambda _, k: ~windows(k),
            count,
            activation=self.activation,
        )
        drops = clean - occluded
        total = torch.zeros(inputs.shape[0], height * width, device=device, dtype=drops.dtype)
        covered = torch.zeros(height * width, device=device, dtype=drops.dtype)
        for start in range(0, count, 256):
            chunk = torch.arange(start, min(count, start + 256), device=device)
            masks = windows(chunk).flatten(1).to(drops.dtype)
            total += drops[:, chunk] @ masks
            covered += masks.sum(0)
        attributions = total / covered.clamp_min(1)
        return attributions.to(inputs.dtype).view(inputs.shape[0], 1, height, width)
