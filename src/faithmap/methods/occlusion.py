"""Occlusion: the drop in the target score when a sliding window is removed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import ACTIVATION, Activation, Model
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError


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
    window : int, default=8
        Side of the square window in pixels.
    stride : int, default=4
        Step between windows.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What the occluded pixels become.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """

    image_only = True

    parameter_constraints: ClassVar[Constraints] = {
        "window": [Interval(int, 1)],
        "stride": [Interval(int, 1)],
        "fill": FILL,
        "activation": [ACTIVATION],
    }

    window: int = 8
    stride: int = 4
    fill: FillSpec = 0.0
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        height, width = inputs.shape[-2:]
        if self.window > min(height, width):
            raise InvalidParameterError(
                f"The occlusion window ({self.window} px) is larger than the image "
                f"({height}x{width}). Use a window of at most {min(height, width)}."
            )
        device = inputs.device
        tops = window_starts(height, self.window, self.stride).to(device)
        lefts = window_starts(width, self.window, self.stride).to(device)
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        count = tops.numel() * lefts.numel()

        def windows(indices: Tensor) -> Tensor:
            top, left = tops[indices // lefts.numel()], lefts[indices % lefts.numel()]
            inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + self.window)
            inside_cols = (cols >= left[:, None]) & (cols < left[:, None] + self.window)
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
