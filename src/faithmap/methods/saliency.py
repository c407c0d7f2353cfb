"""Saliency: the gradient of the target score with respect to the input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.targets import Target


@register_method("saliency")
@dataclass(frozen=True, kw_only=True)
class Saliency(Method):
    """Absolute input gradient of the target score (Simonyan et al. 2014).

    Parameters
    ----------
    absolute : bool, default=True
        Take the absolute value of the gradient, as the paper does.
    reduce : {"max", "sum", "mean", "abs_sum", "none"}, default="max"
        How channels are collapsed for images; the paper takes the maximum over channels.
    activation : {"logits", "softmax"}, default="logits"
        Differentiate the raw output (the paper's class score) or its softmax.

    References
    ----------
    Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps", ICLR Workshop 2014.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "absolute": [BOOLEAN],
        "reduce": [REDUCE],
        "activation": [ACTIVATION],
    }

    absolute: bool = True
    reduce: Reduce = "max"
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        gradients = torch.empty_like(inputs)

        def keep(samples: Tensor, _: Tensor, __: Tensor, grads: Tensor) -> None:
            gradients[samples] = grads

        model.gradient_rows(
            inputs.shape[0],
            1,
            lambda samples, _: inputs[samples],
            target,
            keep,
            activation=self.activation,
            device=inputs.device,
        )
        return reduce_channels(gradients.abs() if self.absolute else gradients, self.reduce)
