"""RISE: randomized input sampling, the score-weighted average of random smooth masks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target

MASK_CACHE_BYTES = 256 * 2**20
"""Masks up to this size are built once and kept; larger sets are rebuilt batch by batch."""


@register_method("rise")
@dataclass(frozen=True, kw_only=True)
class Rise(Method):
    """RISE saliency from random masks (Petsiuk et al. 2018).

    Each mask is a ``grid x grid`` binary grid with keep probability ``keep_probability``,
    bilinearly upsampled to ``(grid + 1) * ceil(H / grid)`` and cropped with a random shift, as in
    the reference code. The saliency is ``sum_i score(x * m_i) * m_i / (n_masks * p)``. The same
    masks are used for every image of the batch.

    Parameters
    ----------
    n_masks : int, default=2000
        Number of masks (forward passes per image); 2000 with grid 8 and p = 0.5 is the
        reference's quick-start setting, 6000 with p = 0.1 its ImageNet setting.
    grid : int, default=8
    keep_probability : float, default=0.5
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What masked pixels become (the reference multiplies by the mask: 0).
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018.
    """

    image_only = True

    parameter_constraints: ClassVar[Constraints] = {
        "n_masks": [Interval(int, 1)],
        "grid": [Interval(int, 1)],
        "keep_probability": [Interval(float, 0.0, 1.0, closed="right")],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    n_masks: int = 2000
    grid: int = 8
    keep_probability: float = 0.5
    fill: FillSpec = 0.0
    activation: Activation = "softmax"
    seed: int = 0

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        height, width = inputs.shape[-2:]
        device = inputs.device
        generator = torch.Generator().manual_seed(self.seed)
        draws = torch.rand(self.n_masks, 1, self.grid, self.grid, generator=generator)
        grids = (draws < self.keep_probability).to(device=device, dtype=inputs.dtype)
        cell_h, cell_w = math.ceil(height / self.grid), math.ceil(width / self.grid)
        shift_h = torch.randint(0, cell_h, (self.n_masks,), generator=generator).to(device)
        shift_w = torch.randint(0, cell_w, (self.n_masks,), generator=generator).to(device)
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        upsampled = ((self.grid + 1) * cell_h, (self.grid + 1) * cell_w)

        def masks(indices: Tensor) -> Tensor:
            smooth = F.interpolate(
                grids[indices], size=upsampled, mode="bilinear", align_corners=False
            )
            r = (rows[None, :] + shift_h[indices, None])[:, None, :, None]
            c = (cols[None, :] + shift_w[indices, None])[:, None, None, :]
            flat = r * upsampled[1] + c
            return smooth.flatten(2).gather(2, flat.flatten(2)).view(-1, 1, height, width)

        if self.n_masks * height * width * inputs.element_size() <= MASK_CACHE_BYTES:
            cached = torch.cat([masks(chunk) for chunk in _chunks(self.n_masks, device)])

            def masks(indices: Tensor) -> Tensor:
                return cached[indices]

        substrate = make_removal(self.fill).substrate(inputs)
        scores = score_removals(
            model,
            inputs,
            target,
            substrate,
            lambda _, k: masks(k),
            self.n_masks,
            activation=self.activation,
        )
        saliency = torch.zeros(inputs.shape[0], height * width, device=device, dtype=scores.dtype)
        for chunk in _chunks(self.n_masks, device):
            saliency += scores[:, chunk] @ masks(chunk).flatten(1)
        saliency = saliency / (self.n_masks * self.keep_probability)
        return saliency.to(inputs.dtype).view(-1, 1, height, width)


def _chunks(total: int, device: torch.device, size: int = 256) -> list[Tensor]:
    """Index ranges ``[0, total)`` in pieces of ``size``."""
    return list(torch.split(torch.arange(total, device=device), size))
