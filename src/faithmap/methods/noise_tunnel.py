"""The noise tunnel: SmoothGrad, SmoothGrad-Squared and VarGrad over any gradient method."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, InstanceOf, Interval, options
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.registry import METHODS, register_method
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.copies import copy_attributor

Kind = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
KINDS = get_args(Kind)
COPY_BUFFER_BYTES = 256 * 2**20
"""Samples are attributed in groups whose per-copy attributions fit in this many bytes."""


@register_method("smoothgrad")
@dataclass(frozen=True, kw_only=True)
class NoiseTunnel(Method):
    """SmoothGrad and its variants: a gradient method averaged over noisy copies of the input.

    Each sample ``x`` gets ``n_samples`` copies ``x + sigma * z_k`` with ``z_k`` standard normal
    noise and ``sigma = stdev * (max(x) - min(x))``; the base method attributes every copy, and
    the copies' attributions ``a_k`` are combined per input element: their mean (SmoothGrad),
    the mean of their squares (SmoothGrad-Squared) or their variance ``mean(a^2) - mean(a)^2``
    (VarGrad). Channels are then collapsed with ``reduce``. The same draws ``z_k`` are used for
    every sample of the batch, so a sample's result does not depend on the rest of the batch.

    Copies and the base method's own steps are rows of one gradient job: SmoothGrad over
    Integrated Gradients with 16 copies of 32 steps streams 512 rows per sample through the
    model at its measured batch size, one backward pass per batch. Anything the base derives
    from the input (a blurred baseline) is computed from the clean input.

    Parameters
    ----------
    kind : {"smoothgrad", "smoothgrad_sq", "vargrad"}, default="smoothgrad"
    base : str, default="saliency"
        The registered gradient method applied to the copies: ``"saliency"``,
        ``"input_x_gradient"``, ``"integrated_gradients"``, ``"guided_backprop"`` or
        ``"gradient_shap"``.
    base_params : mapping or None, default=None
        Parameters of the base method. ``None`` means its defaults, except that the gradient of
        a ``"saliency"`` base is kept signed (``absolute=False``) as in SmoothGrad and VarGrad;
        Captum's ``NoiseTunnel(Saliency)`` averages absolute gradients, ``{"absolute": True}``
        here. The base's ``reduce`` cannot be set: channels are reduced after combining.
    n_samples : int, default=50
        Noisy copies per sample (the SmoothGrad paper's setting; its gains flatten beyond 50).
    stdev : float, default=0.15
        Noise standard deviation as a fraction of each sample's value range; the paper finds
        10-20 % best.
    reduce : {"abs_sum", "sum", "mean", "max", "none"}, default="abs_sum"
        How image channels of the combined map are collapsed; the SmoothGrad paper shows the
        sum of magnitudes over channels.
    seed : int, default=0

    References
    ----------
    Smilkov, Thorat, Kim, Viegas, Wattenberg, "SmoothGrad: removing noise by adding noise",
    arXiv:1706.03825, 2017.

    Adebayo, Gilmer, Goodfellow, Kim, "Local Explanation Methods for Deep Neural Networks Lack
    Sensitivity to Parameter Values", ICLR Workshop 2018 (VarGrad).

    Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
    Networks", NeurIPS 2019 (SmoothGrad-Squared).

    Examples
    --------
    >>> import torch, warnings
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    >>> x = torch.rand(2, 3, 2, 2)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     exp = NoiseTunnel(kind="vargrad", n_samples=4).explain(net, x, target=0)
    >>> exp.attributions.shape, float(exp.attributions.abs().max())  # a linear model: no variance
    (torch.Size([2, 1, 2, 2]), 0.0)
    >>> [warning.category.__name__ for warning in caught]  # a flat map says so
    ['ConstantMapWarning']
    """

    parameter_constraints: ClassVar[Constraints] = {
        "kind": [options(KINDS)],
        "base": [InstanceOf((str,), "the name of a registered gradient method")],
        "base_params": [InstanceOf((Mapping,), "a mapping of parameter names to values"), None],
        "n_samples": [Interval(int, 1)],
        "stdev": [Interval(float, 0.0)],
        "reduce": [REDUCE],
        "seed": [SEED],
    }

    kind: Kind = "smoothgrad"
    base: str = "saliency"
    base_params: Mapping[str, Any] | None = None
    n_samples: int = 50
    stdev: float = 0.15
    reduce: Reduce = "abs_sum"
    seed: int = 0

    def check(self) -> None:
        self.base_method()  # the base must exist, take the base parameters and attribute copies

    def base_method(self) -> Method:
        """The base method, built (and so validated) from ``base`` and ``base_params``."""
        if self.base == self.name:
            raise InvalidParameterError(
                "The 'base' parameter of NoiseTunnel must be the name of a registered gradient "
                f"method other than {self.name!r}, such as 'saliency'. Got {self.base!r} instead."
            )
        params = self.base_params
        if params is None:
            params = {"absolute": False} if self.base == "saliency" else {}
        if "reduce" in params:
            raise InvalidParameterError(
                "The 'base_params' of NoiseTunnel cannot set 'reduce': channels are collapsed "
                "after the copies are combined. Pass reduce=... to the noise tunnel instead."
            )
        cls = METHODS[self.base]
        try:
            method: Method = cls(**params)
        except TypeError as err:
            raise InvalidParameterError(
                f"The 'base_params' of NoiseTunnel do not fit the method {self.base!r}: {err}."
            ) from err
        copy_attributor(method)  # raises for a base that cannot attribute copies
        return method

    def noise(self, shape: tuple[int, ...]) -> Tensor:
        """The standard normal draws ``(n_samples, *shape)`` for ``seed`` (float32, on the CPU)."""
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randn((self.n_samples, *shape), generator=generator)

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        run = copy_attributor(self.base_method())
        noise = self.noise(tuple(inputs.shape[1:])).to(inputs)
        flat = inputs.flatten(1)
        sigma = self.stdev * (flat.amax(1) - flat.amin(1))
        shape = (-1,) + (1,) * (inputs.dim() - 1)
        copy_bytes = self.n_samples * inputs[0].numel() * inputs.element_size()
        group = max(1, COPY_BUFFER_BYTES // copy_bytes)
        parts = []
        for start in range(0, inputs.shape[0], group):
            index = torch.arange(start, min(start + group, inputs.shape[0]), device=inputs.device)
            part, part_sigma = inputs[index], sigma[index]

            def perturb(
                samples: Tensor,
                copies: Tensor,
                part: Tensor = part,
                part_sigma: Tensor = part_sigma,
            ) -> Tensor:
                return part[samples] + part_sigma[samples].view(shape) * noise[copies]

            attributions = run(model, part, target.subset(index), self.n_samples, perturb)
            parts.append(self.combine(attributions))
        return reduce_channels(torch.cat(parts), self.reduce)

    def combine(self, attributions: Tensor) -> Tensor:
        """Combine per-copy attributions ``(N, n_samples, ...)`` into ``(N, ...)`` by ``kind``."""
        if self.kind == "smoothgrad":
            return attributions.mean(1)
        if self.kind == "smoothgrad_sq":
            return attributions.square().mean(1)
        return attributions.var(1, correction=0)
