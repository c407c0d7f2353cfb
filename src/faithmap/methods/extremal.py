"""Extremal perturbations: the smooth mask of a given area that best preserves the target."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Self

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, blend, make_removal
from faithmap.core.targets import Target
from faithmap.methods.scaling import grid_side


def area_reference(pixels: int, area: float, *, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The sorted mask of exactly ``area`` kept: ``(1 - area) * pixels`` zeros, then ones."""
    reference = torch.zeros(pixels, device=device, dtype=dtype)
    reference[pixels - round(area * pixels) :] = 1.0
    return reference


@register_method("extremal")
@dataclass(frozen=True, kw_only=True)
class ExtremalPerturbation(Method):
    """Extremal perturbation, preservation game (Fong, Patrick and Vedaldi 2019).

    Finds, for each image, the smooth mask ``m`` with a fraction ``area`` of the pixels kept that
    maximises the target score of ``m * x + (1 - m) * fill(x)``. The mask is a ``grid``-pixel
    lattice of parameters in [0, 1], bilinearly upsampled, and minimises
    ``-score + weight * mean((sort(m) - r_area)^2)``: the area term compares the sorted mask with
    the ideal one, as in the paper, and its weight grows geometrically from 1 to
    ``area_weight`` so the area is enforced by the end. Each iteration costs one forward and one
    backward pass per image, through :class:`faithmap.Model`. The result is the final mask.

    The optimiser is the reference's (TorchRay): SGD with momentum 0.9 and dampening 0.9, whose
    steps are proportional to the gradient. Adam's are not: from the flat start it turns
    gradients as small as float rounding into full steps, so float32 and float64, or two batch
    sizes, ended on different masks. Each parameter gathers the gradient of about
    ``1 / parameters`` of the image, so the loss is multiplied by the number of lattice
    parameters: a learning rate means the same at 8x8 and at 224x224.

    Parameters
    ----------
    area : float, default=0.1
        Fraction of the image the mask keeps.
    iterations : int, default=300
        Optimisation steps (TorchRay uses 800 at 224 x 224).
    grid : int or None, default=None
        Pixels between mask parameters (the mask's smoothness). ``None`` scales it to the
        input: ``min(8, grid_side)`` with :func:`~faithmap.methods.scaling.grid_side`
        ``= max(1, round(sqrt(H * W) / 8))``, so the lattice has about 8 or more parameters a
        side (8 pixels from 64x64 up, 1 on 8x8); the explanation records the grid used.
    learning_rate : float, default=0.01
        SGD step on the loss times the number of mask parameters (see above).
    area_weight : float, default=300.0
        Final weight of the area term.
    fill : {"constant", "mean", "blur", "noise"} or float, default="blur"
        What the removed part becomes (the paper blurs it).
    activation : {"softmax", "logits"}, default="softmax"

    References
    ----------
    Fong, Patrick, Vedaldi, "Understanding Deep Networks via Extremal Perturbations and Smooth
    Masks", ICCV 2019.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 16, 16), method="extremal", iterations=3,
    ...                        grid=4)
    >>> exp.attributions.shape, exp.cost.backward
    (torch.Size([2, 1, 16, 16]), 6)
    """

    image_only = True

    parameter_constraints: ClassVar[Constraints] = {
        "area": [Interval(float, 0.0, 1.0, closed="right")],
        "iterations": [Interval(int, 1)],
        "grid": [None, Interval(int, 1)],
        "learning_rate": [Interval(float, 0.0, closed="right")],
        "area_weight": [Interval(float, 1.0)],
        "fill": FILL,
        "activation": [ACTIVATION],
    }

    area: float = 0.1
    iterations: int = 300
    grid: int | None = None
    learning_rate: float = 0.01
    area_weight: float = 300.0
    fill: FillSpec = "blur"
    activation: Activation = "softmax"

    def resolve(self, inputs: Tensor) -> Self:
        """The grid for these images: ``None`` scaled to them (see ``grid``)."""
        return replace(self, grid=self._grid(int(inputs.shape[-2]), int(inputs.shape[-1])))

    def _grid(self, height: int, width: int) -> int:
        """``grid``, or for ``None`` ``min(8, grid_side(height, width))``."""
        return self.grid if self.grid is not None else min(8, grid_side(height, width))

    def constant_map_advice(self, inputs: Tensor) -> str:
        return (
            f"Use a finer 'grid' (now {self.resolve(inputs).grid} px; grid=None scales it to the "
            "input), more 'iterations' or a larger 'learning_rate', or activation='logits' if "
            "the softmax is saturated; or check that the model's target output depends on the "
            "input."
        )

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        n, _, height, width = inputs.shape
        grid = self._grid(height, width)
        substrate = make_removal(self.fill).substrate(inputs)
        difference = inputs - substrate
        lattice = (-(-height // grid) + 1, -(-width // grid) + 1)
        parameters = torch.full((n, 1, *lattice), 0.5, device=inputs.device, dtype=inputs.dtype)
        parameters.requires_grad_(True)
        optimiser = torch.optim.SGD(
            [parameters], lr=self.learning_rate, momentum=0.9, dampening=0.9
        )
        per_parameter = float(lattice[0] * lattice[1])  # each gathers ~1/this of the image
        reference = area_reference(
            height * width, self.area, device=inputs.device, dtype=inputs.dtype
        )
        growth = self.area_weight ** (1.0 / max(self.iterations - 1, 1))
        score_gradient = torch.zeros(n, 1, height, width, device=inputs.device, dtype=inputs.dtype)

        current = torch.empty_like(score_gradient)  # this step's mask, without its graph

        def perturbed(samples: Tensor, _: Tensor) -> Tensor:
            return blend(inputs[samples], substrate[samples], current[samples])

        def collect(samples: Tensor, _: Tensor, __: Tensor, gradients: Tensor) -> None:
            score_gradient[samples] = (gradients * difference[samples]).sum(1, keepdim=True)

        for step in range(self.iterations):
            with torch.enable_grad():
                mask = self._mask(parameters, height, width)
                current.copy_(mask.detach())
                model.gradient_rows(
                    n,
                    1,
                    perturbed,
                    target,
                    collect,
                    activation=self.activation,
                    device=inputs.device,
                )
                area_term = (mask.flatten(1).sort(dim=1).values - reference).pow(2).mean(1)
                loss = -(score_gradient * mask).sum() + growth**step * area_term.sum()
                loss = loss * per_parameter
                optimiser.zero_grad()
                loss.backward()
            optimiser.step()
            with torch.no_grad():
                parameters.clamp_(0.0, 1.0)
        return self._mask(parameters.detach(), height, width)

    @staticmethod
    def _mask(parameters: Tensor, height: int, width: int) -> Tensor:
        """The pixel mask: the parameter lattice bilinearly upsampled and cropped to the image."""
        rows, cols = parameters.shape[-2:]
        grid_h, grid_w = (height + rows - 2) // (rows - 1), (width + cols - 2) // (cols - 1)
        full = F.interpolate(
            parameters,
            size=((rows - 1) * grid_h + 1, (cols - 1) * grid_w + 1),
            mode="bilinear",
            align_corners=True,
        )
        return full[..., :height, :width]
