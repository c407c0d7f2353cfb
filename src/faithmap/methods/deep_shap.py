"""DeepSHAP: DeepLIFT against every row of a background set, averaged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec
from faithmap.core.targets import Target
from faithmap.errors import ShapeError
from faithmap.methods.deep_lift import DeepLift
from faithmap.methods.deep_lift_rules import rescale_rows
from faithmap.methods.gradient_shap import BACKGROUND, describe_tensor


@register_method("deep_shap")
@dataclass(frozen=True, kw_only=True)
class DeepShap(Method):
    """DeepSHAP: DeepLIFT averaged over a background set (Lundberg & Lee 2017).

    The attribution of ``x`` is the mean, over the background rows ``b``, of DeepLIFT's
    Rescale attributions ``(x - b) * m(x, b)`` (:class:`~faithmap.methods.deep_lift.DeepLift`,
    with its rules and its refusal of non-linearities it has no rule for); it sums to
    ``f(x) - mean_b f(b)``, an approximation of SHAP values with the background as the data
    distribution. Every input is explained against every background row (no sampling, so no
    seed); the background's activations are recorded once for the whole batch. This is
    Captum's ``DeepLiftShap``.

    Parameters
    ----------
    background : Tensor or None, default=None
        The background set ``(M, ...)``, shaped like the inputs without the batch (a sample
        of training data is the usual choice). ``None`` uses one baseline per input made by
        ``baseline``, which is DeepLIFT. The method's record holds its shape and a hash.
    baseline : {"constant", "mean", "blur", "noise"} or float, default=0.0
        The baseline when ``background`` is ``None``.
    multiply_by_inputs : bool, default=True
        Multiply the multipliers by ``x - b`` (summation-to-delta holds only then).
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps the total.

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.

    Shrikumar, Greenside, Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(4)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> x, background = torch.rand(2, 4), torch.rand(5, 4)
    >>> attributions = DeepShap(background=background).explain(net, x, 1).attributions
    >>> delta = net(x)[:, 1] - net(background)[:, 1].mean()
    >>> bool(torch.allclose(attributions.sum(1), delta, atol=1e-6))
    True
    """

    parameter_constraints: ClassVar[Constraints] = {
        "background": [BACKGROUND, None],
        "baseline": FILL,
        "multiply_by_inputs": [BOOLEAN],
        "reduce": [REDUCE],
    }

    background: Tensor | None = field(default=None, repr=False, compare=False)
    baseline: FillSpec = 0.0
    multiply_by_inputs: bool = True
    reduce: Reduce = "sum"

    def config(self) -> dict[str, Any]:
        """The parameters, with the background set described by its shape, dtype and hash."""
        record = super().config()
        if self.background is not None:
            record["background"] = describe_tensor(self.background)
        return record

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        if self.background is None:
            deep_lift = DeepLift(
                baseline=self.baseline, multiply_by_inputs=self.multiply_by_inputs, reduce="none"
            )
            return reduce_channels(deep_lift.attribute(model, inputs, target), self.reduce)
        if tuple(self.background.shape[1:]) != tuple(inputs.shape[1:]):
            raise ShapeError(
                f"The background rows must have the inputs' shape without the batch, "
                f"{tuple(inputs.shape[1:])}. Got background of shape "
                f"{tuple(self.background.shape)} instead."
            )
        background = self.background.to(inputs)
        size = background.shape[0]
        total = torch.zeros_like(inputs)

        def keep(samples: Tensor, indices: Tensor, rows: Tensor, multipliers: Tensor) -> None:
            if self.multiply_by_inputs:
                multipliers = multipliers * (rows - background[indices])
            total.index_add_(0, samples, multipliers)

        rescale_rows(
            model,
            background,
            inputs.shape[0],
            size,
            lambda samples, _: inputs[samples],
            lambda _, indices: indices,
            target,
            keep,
            owner="DeepShap",
        )
        return reduce_channels(total / size, self.reduce)
