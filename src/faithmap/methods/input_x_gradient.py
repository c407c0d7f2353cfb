"""Input x Gradient: the input times the gradient of the target score."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from faithmap.core.constraints import Constraints
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.methods.copies import Perturb, gradient_copies, unperturbed


@register_method("input_x_gradient")
@dataclass(frozen=True, kw_only=True)
class InputXGradient(Method):
    """The input multiplied elementwise by the gradient of the target score.

    For a linear model ``w . x + b`` the attribution of feature ``i`` is ``x_i w_i``, its exact
    contribution. On ReLU networks it is closely related to epsilon-LRP and DeepLIFT (Ancona
    et al. 2018).

    Parameters
    ----------
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps the per-pixel contributions additive.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Shrikumar, Greenside, Shcherbina, Kundaje, "Not Just a Black Box: Learning Important
    Features Through Propagating Activation Differences", arXiv:1605.01713, 2016.

    Ancona, Ceolini, Oztireli, Gross, "Towards Better Understanding of Gradient-Based
    Attribution Methods for Deep Neural Networks", ICLR 2018.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2, bias=False)
    >>> x = torch.tensor([[1.0, 2.0, 3.0]])
    >>> exp = InputXGradient().explain(net, x, target=0)
    >>> torch.allclose(exp.attributions, x * net.weight[0])
    True
    """

    parameter_constraints: ClassVar[Constraints] = {
        "reduce": [REDUCE],
        "activation": [ACTIVATION],
    }

    reduce: Reduce = "sum"
    activation: Activation = "logits"

    def copy_attributions(
        self, model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb
    ) -> Tensor:
        """Input x Gradient of each copy ``(N, copies, ...)``; see :mod:`.copies`."""
        return gradient_copies(
            model,
            inputs,
            target,
            copies,
            perturb,
            lambda gradients, rows: gradients * rows,
            activation=self.activation,
        )

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        attributions = self.copy_attributions(model, inputs, target, 1, unperturbed(inputs))
        return reduce_channels(attributions[:, 0], self.reduce)
