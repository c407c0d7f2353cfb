"""DeepLIFT with the Rescale rule: attributions of ``f(x) - f(baseline)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints, InstanceOf
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal
from faithmap.core.targets import Target
from faithmap.errors import ShapeError
from faithmap.methods.deep_lift_rules import rescale_rows

CHUNK = 32
"""Samples explained together when each has its own baseline: the baselines' activations at
every non-linear layer are kept while their samples are explained."""


@register_method("deep_lift")
@dataclass(frozen=True, kw_only=True)
class DeepLift(Method):
    """DeepLIFT with the Rescale rule (Shrikumar et al. 2017).

    Explains ``f(x) - f(b)`` for a baseline ``b``: multipliers are propagated like gradients,
    except that each non-linearity hands down ``delta_out / delta_in`` of the input's and the
    baseline's activations (see :mod:`faithmap.methods.deep_lift_rules`), and the attribution is
    ``(x - b) * multiplier``. It sums to ``f(x) - f(b)`` exactly, and equals Captum's
    ``DeepLift`` on the modules it has rules for. Rules exist for element-wise activation
    modules (ReLU, sigmoid, tanh, GELU, SiLU, ...) and max-pooling modules; linear layers,
    batch norm in eval mode, sums (residual connections), means and reshapes keep their
    gradient. Any other non-linear operation in ``forward`` (``F.relu``, softmax, LayerNorm,
    a product of activations) raises :class:`~faithmap.errors.ModelError`. The target must be
    a class index. The RevealCancel rule is not implemented.

    Parameters
    ----------
    baseline : {"constant", "mean", "blur", "noise"} or float, default=0.0
        The baseline, made by the same removal fills as every other method; a number is a
        constant baseline. Pass a tensor baseline through ``baseline_tensor`` instead.
    baseline_tensor : Tensor or None, default=None
        A baseline broadcastable to the inputs; overrides ``baseline``.
    multiply_by_inputs : bool, default=True
        Multiply the multipliers by ``x - b`` (summation-to-delta holds only then).
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps the total.

    References
    ----------
    Shrikumar, Greenside, Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(4)
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> x = torch.rand(2, 4)
    >>> attributions = DeepLift().explain(net, x, target=0).attributions
    >>> delta = net(x)[:, 0] - net(torch.zeros(1, 4))[:, 0]
    >>> bool(torch.allclose(attributions.sum(1), delta, atol=1e-6))
    True
    """

    parameter_constraints: ClassVar[Constraints] = {
        "baseline": FILL,
        "baseline_tensor": [InstanceOf((Tensor,), "a tensor broadcastable to the inputs"), None],
        "multiply_by_inputs": [BOOLEAN],
        "reduce": [REDUCE],
    }

    baseline: FillSpec = 0.0
    baseline_tensor: Tensor | None = None
    multiply_by_inputs: bool = True
    reduce: Reduce = "sum"

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
        if bool((baselines == baselines[:1]).all()):  # one baseline for all: recorded once
            return reduce_channels(
                self._explain_part(model, inputs, baselines[:1], target), self.reduce
            )
        parts = []
        for start in range(0, inputs.shape[0], CHUNK):
            index = torch.arange(start, min(start + CHUNK, inputs.shape[0]), device=inputs.device)
            parts.append(
                self._explain_part(model, inputs[index], baselines[index], target.subset(index))
            )
        return reduce_channels(torch.cat(parts), self.reduce)

    def _explain_part(
        self, model: Model, inputs: Tensor, references: Tensor, target: Target
    ) -> Tensor:
        """Attributions of ``inputs`` against one shared reference or one reference each."""
        result = torch.empty_like(inputs)
        shared = references.shape[0] == 1

        def reference_of(samples: Tensor, _: Tensor) -> Tensor:
            return torch.zeros_like(samples) if shared else samples

        def keep(samples: Tensor, indices: Tensor, rows: Tensor, multipliers: Tensor) -> None:
            if self.multiply_by_inputs:
                multipliers = multipliers * (rows - references[reference_of(samples, indices)])
            result[samples] = multipliers

        rescale_rows(
            model,
            references,
            inputs.shape[0],
            1,
            lambda samples, _: inputs[samples],
            reference_of,
            target,
            keep,
            owner="DeepLift",
        )
        return result
