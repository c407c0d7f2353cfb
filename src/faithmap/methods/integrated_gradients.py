"""Integrated Gradients: the path integral of gradients from a baseline to the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints, InstanceOf, Interval, options
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError, ShapeError

Quadrature = Literal[
    "gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"
]
RULES = get_args(Quadrature)


def quadrature(rule: str, steps: int) -> tuple[Tensor, Tensor]:
    """Points ``alpha`` in [0, 1] and weights summing to 1 for the path integral."""
    if rule == "gausslegendre":
        nodes, gauss_weights = np.polynomial.legendre.leggauss(steps)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * gauss_weights)
    if rule == "riemann_trapezoid":
        if steps < 2:
            raise InvalidParameterError(
                f"The trapezoid rule needs 'steps' >= 2 (both endpoints). Got {steps} instead."
            )
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (steps - 1)
        return torch.linspace(0, 1, steps, dtype=torch.float64), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[rule]
    alphas = (torch.arange(steps, dtype=torch.float64) + offset) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


@register_method("integrated_gradients")
@dataclass(frozen=True, kw_only=True)
class IntegratedGradients(Method):
    """Integrated Gradients along the straight path from a baseline (Sundararajan et al. 2017).

    Parameters
    ----------
    steps : int, default=32
        Points on the path (gradient evaluations per sample).
    rule : {"gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", \
"riemann_middle"}, default="gausslegendre"
        The quadrature rule (Captum's default is Gauss-Legendre).
    baseline : {"constant", "mean", "blur", "noise"} or float, default=0.0
        The baseline, made by the same removal fills as every other method; a number is a
        constant baseline. Pass a tensor baseline through ``baseline_tensor`` instead.
    multiply_by_inputs : bool, default=True
        Multiply the averaged gradient by ``inputs - baseline`` (completeness holds only then).
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps completeness.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "steps": [Interval(int, 1)],
        "rule": [options(RULES)],
        "baseline": FILL,
        "baseline_tensor": [InstanceOf((Tensor,), "a tensor broadcastable to the inputs"), None],
        "multiply_by_inputs": [BOOLEAN],
        "reduce": [REDUCE],
        "activation": [ACTIVATION],
    }

    steps: int = 32
    rule: Quadrature = "gausslegendre"
    baseline: FillSpec = 0.0
    baseline_tensor: Tensor | None = None
    multiply_by_inputs: bool = True
    reduce: Reduce = "sum"
    activation: Activation = "logits"

    def check(self) -> None:
        if self.rule == "riemann_trapezoid" and self.steps < 2:
            quadrature(self.rule, self.steps)  # raises: the trapezoid rule needs both endpoints

    def baselines(self, inputs: Tensor) -> Tensor:
        """The baseline of each input, same shape as ``inputs``."""
        if self.baseline_tensor is not None:
            try:
                return self.baseline_tensor.to(inputs).expand_as(inputs)
            except RuntimeError as err:
                raise ShapeError(
                    f"The baseline tensor of shape {tuple(self.baseline_tensor.shape)} cannot be "
                    f"broadcast to the inputs' shape {tuple(inputs.shape)}."
                ) from err
        return make_removal(self.baseline).substrate(inputs)

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        baselines = self.baselines(inputs)
        alphas, weights = (t.to(inputs) for t in quadrature(self.rule, self.steps))
        difference = inputs - baselines
        shape = (-1,) + (1,) * (inputs.dim() - 1)
        total = torch.zeros_like(inputs)

        def path_point(samples: Tensor, steps: Tensor) -> Tensor:
            return baselines[samples] + alphas[steps].view(shape) * difference[samples]

        def accumulate(samples: Tensor, steps: Tensor, _: Tensor, grads: Tensor) -> None:
            total.index_add_(0, samples, grads * weights[steps].view(shape))

        model.gradient_rows(
            inputs.shape[0],
            self.steps,
            path_point,
            target,
            accumulate,
            activation=self.activation,
            device=inputs.device,
        )
        attributions = total * difference if self.multiply_by_inputs else total
        return reduce_channels(attributions, self.reduce)
