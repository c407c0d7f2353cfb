"""GradientSHAP / Expected Gradients: gradients at random points between background and input."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, SEED, Constraints, Interval, Satisfies
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal
from faithmap.core.targets import Target
from faithmap.errors import ShapeError
from faithmap.methods.copies import Perturb, unperturbed


def _is_background(value: Any) -> bool:
    return isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] > 0


BACKGROUND = Satisfies(
    _is_background, "a tensor of baselines (M, ...) with M >= 1", invalid=torch.zeros(0)
)


def describe_tensor(tensor: Tensor) -> str:
    """A short, content-identifying description of a tensor for a method's record."""
    data = tensor.detach().to("cpu", torch.float64).contiguous().numpy().tobytes()
    digest = hashlib.sha1(data).hexdigest()[:12]
    return f"Tensor(shape={tuple(tensor.shape)}, dtype={tensor.dtype}, sha1={digest})"


@dataclass(frozen=True)
class Draws:
    """The random draws of one explanation, shared by every sample of the batch.

    ``background`` ``(n_samples,)`` indices into the background set, ``alphas`` ``(n_samples,)``
    points on the path in [0, 1), ``noise`` ``(n_samples, ...)`` standard normal (or ``None``
    when ``stdev`` is 0).
    """

    background: Tensor
    alphas: Tensor
    noise: Tensor | None


@register_method("gradient_shap")
@dataclass(frozen=True, kw_only=True)
class GradientShap(Method):
    """GradientSHAP, also known as Expected Gradients (Lundberg & Lee 2017; Erion et al. 2021).

    The expectation, over a baseline ``b`` drawn from a background set and a point ``alpha``
    drawn uniformly on [0, 1], of ``(x - b) * grad f(b + alpha (x - b))``: Integrated Gradients
    averaged over the background distribution, estimated with ``n_samples`` draws per sample.
    Its attributions sum, in expectation, to ``f(x) - E[f(b)]``. With ``stdev > 0`` Gaussian
    noise of ``stdev * (max(x) - min(x))`` is added to ``x`` first (Captum's ``stdevs``, shap's
    ``local_smoothing``); at ``stdev=0`` this is exactly Expected Gradients, so there is no
    separate method of that name. The same draws are used for every sample of the batch.

    Parameters
    ----------
    background : Tensor or None, default=None
        The background set ``(M, ...)``, shaped like the inputs without the batch; baselines
        are drawn from its rows (a training sample is the usual choice). ``None`` uses one
        baseline per input made by ``baseline``. The method's record holds its shape and a hash.
    baseline : {"constant", "mean", "blur", "noise"} or float, default=0.0
        The baseline when ``background`` is ``None`` (as in Integrated Gradients).
    n_samples : int, default=32
        Draws per sample (gradient evaluations), as many as Integrated Gradients' default steps.
    stdev : float, default=0.0
        Input noise as a fraction of each sample's value range.
    multiply_by_inputs : bool, default=True
        Multiply each gradient by ``x - b``; ``False`` gives the averaged gradient only.
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps the attributions additive.
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.

    Erion, Janizek, Sturmfels, Lundberg, Lee, "Improving performance of deep learning models
    with axiomatic attribution priors and expected gradients", Nature Machine Intelligence 2021.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> x, background = torch.ones(1, 3), torch.zeros(4, 3)
    >>> exp = GradientShap(background=background, n_samples=8).explain(net, x, target=0)
    >>> torch.allclose(exp.attributions, x * net.weight[0])  # linear: (x - b) * w
    True
    """

    parameter_constraints: ClassVar[Constraints] = {
        "background": [BACKGROUND, None],
        "baseline": FILL,
        "n_samples": [Interval(int, 1)],
        "stdev": [Interval(float, 0.0)],
        "multiply_by_inputs": [BOOLEAN],
        "reduce": [REDUCE],
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    background: Tensor | None = field(default=None, repr=False, compare=False)
    baseline: FillSpec = 0.0
    n_samples: int = 32
    stdev: float = 0.0
    multiply_by_inputs: bool = True
    reduce: Reduce = "sum"
    activation: Activation = "logits"
    seed: int = 0

    def config(self) -> dict[str, Any]:
        """The parameters, with the background set described by its shape, dtype and hash."""
        record = super().config()
        if self.background is not None:
            record["background"] = describe_tensor(self.background)
        return record

    def draws(self, shape: tuple[int, ...]) -> Draws:
        """The draws for inputs of per-sample ``shape``: background indices, alphas, noise."""
        generator = torch.Generator().manual_seed(self.seed)
        size = 1 if self.background is None else self.background.shape[0]
        background = torch.randint(size, (self.n_samples,), generator=generator)
        alphas = torch.rand(self.n_samples, generator=generator)
        noise = None
        if self.stdev > 0:
            noise = torch.randn((self.n_samples, *shape), generator=generator)
        return Draws(background, alphas, noise)

    def baselines(self, inputs: Tensor) -> Tensor:
        """The baseline set ``(M, ...)`` or, without a background, one baseline per input."""
        if self.background is None:
            return make_removal(self.baseline).substrate(inputs)
        if tuple(self.background.shape[1:]) != tuple(inputs.shape[1:]):
            raise ShapeError(
                f"The background rows must have the inputs' shape without the batch, "
                f"{tuple(inputs.shape[1:])}. Got background of shape "
                f"{tuple(self.background.shape)} instead."
            )
        return self.background.to(inputs)

    def copy_attributions(
        self, model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb
    ) -> Tensor:
        """GradientSHAP of each copy ``(N, copies, ...)``; see :mod:`.copies`."""
        n, draws = inputs.shape[0], self.n_samples
        found = self.draws(tuple(inputs.shape[1:]))
        indices, alphas = found.background.to(inputs.device), found.alphas.to(inputs)
        noise = None if found.noise is None else found.noise.to(inputs)
        flat = inputs.flatten(1)
        sigma = self.stdev * (flat.amax(1) - flat.amin(1))
        references = self.baselines(inputs)
        shape = (-1,) + (1,) * (inputs.dim() - 1)
        total = torch.zeros(
            (n * copies, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
        )

        def start_and_end(samples: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
            draw = index % draws
            end = perturb(samples, index // draws)
            if noise is not None:
                end = end + sigma[samples].view(shape) * noise[draw]
            start = references[samples] if self.background is None else references[indices[draw]]
            return start, end

        def point(samples: Tensor, index: Tensor) -> Tensor:
            start, end = start_and_end(samples, index)
            alpha = alphas[index % draws].view(shape)
            return alpha * end + (1 - alpha) * start

        def accumulate(samples: Tensor, index: Tensor, _: Tensor, gradients: Tensor) -> None:
            if self.multiply_by_inputs:
                start, end = start_and_end(samples, index)
                gradients = gradients * (end - start)
            total.index_add_(0, samples * copies + index // draws, gradients)

        model.gradient_rows(
            n,
            copies * draws,
            point,
            target,
            accumulate,
            activation=self.activation,
            device=inputs.device,
        )
        return (total / draws).view(n, copies, *inputs.shape[1:])

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        attributions = self.copy_attributions(model, inputs, target, 1, unperturbed(inputs))
        return reduce_channels(attributions[:, 0], self.reduce)
