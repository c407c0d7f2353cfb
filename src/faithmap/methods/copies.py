"""Gradient attributions of perturbed copies of the inputs, every copy and step a batch row.

A gradient method attributes a sample through one or more gradient rows (Input x Gradient: one;
Integrated Gradients: one per step). Ensembles such as SmoothGrad attribute many perturbed
copies of each sample with such a method. Here both levels are flattened into the rows of one
:meth:`faithmap.Model.gradient_rows` call: for each sample, ``copies x rows-per-copy`` rows,
streamed at the model's batch size, one backward pass per batch.

A method joins this scheme by implementing :class:`CopyAttributor`; Saliency and Integrated
Gradients, whose modules predate it, are adapted here. :func:`copy_attributor` finds the
function for a method or says which methods are supported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import Activation
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.integrated_gradients import IntegratedGradients, quadrature
from faithmap.methods.saliency import Saliency

Perturb = Callable[[Tensor, Tensor], Tensor]
"""Builds the copies for pairs ``(sample index, copy index)``, both ``(B,)``: ``(B, ...)`` rows."""

CopyFunction = Callable[[Model, Tensor, Target, int, Perturb], Tensor]
"""``(model, inputs, target, copies, perturb) -> (N, copies, *inputs.shape[1:])``."""


@runtime_checkable
class CopyAttributor(Protocol):
    """A method that can attribute perturbed copies of its inputs as gradient rows."""

    def copy_attributions(
        self, model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb
    ) -> Tensor:
        """Attributions ``(N, copies, *inputs.shape[1:])`` of ``perturb``'s copies of ``inputs``.

        Channels are not reduced. Anything derived from the inputs themselves (a blurred
        baseline, say) is computed from the clean ``inputs``; the target is each sample's.
        """
        ...


def unperturbed(inputs: Tensor) -> Perturb:
    """The perturbation that leaves the inputs as they are (one copy per sample)."""
    return lambda samples, _: inputs[samples]


def all_copies(perturb: Perturb, n_samples: int, copies: int, device: torch.device) -> Tensor:
    """Every copy, ``(N, copies, ...)``."""
    pairs = torch.arange(n_samples * copies, device=device)
    rows = perturb(pairs // copies, pairs % copies)
    return rows.view(n_samples, copies, *rows.shape[1:])


def gradient_copies(
    model: Model,
    inputs: Tensor,
    target: Target,
    copies: int,
    perturb: Perturb,
    transform: Callable[[Tensor, Tensor], Tensor],
    *,
    activation: Activation,
) -> Tensor:
    """``transform(gradients, rows)`` of each copy, for methods with one gradient row per copy."""
    n = inputs.shape[0]
    result = inputs.new_empty((n * copies, *inputs.shape[1:]))

    def keep(samples: Tensor, index: Tensor, rows: Tensor, gradients: Tensor) -> None:
        result[samples * copies + index] = transform(gradients, rows)

    model.gradient_rows(
        n, copies, perturb, target, keep, activation=activation, device=inputs.device
    )
    return result.view(n, copies, *inputs.shape[1:])


def _saliency_copies(method: Saliency) -> CopyFunction:
    def run(model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb) -> Tensor:
        def transform(gradients: Tensor, _: Tensor) -> Tensor:
            return gradients.abs() if method.absolute else gradients

        return gradient_copies(
            model, inputs, target, copies, perturb, transform, activation=method.activation
        )

    return run


def _integrated_gradients_copies(method: IntegratedGradients) -> CopyFunction:
    def run(model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb) -> Tensor:
        n, steps = inputs.shape[0], method.steps
        baselines = method.baselines(inputs)
        alphas, weights = (t.to(inputs) for t in quadrature(method.rule, steps))
        shape = (-1,) + (1,) * (inputs.dim() - 1)
        total = torch.zeros(
            (n * copies, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
        )

        def path_point(samples: Tensor, index: Tensor) -> Tensor:
            start = baselines[samples]
            difference = perturb(samples, index // steps) - start
            return start + alphas[index % steps].view(shape) * difference

        def accumulate(samples: Tensor, index: Tensor, _: Tensor, gradients: Tensor) -> None:
            weighted = gradients * weights[index % steps].view(shape)
            total.index_add_(0, samples * copies + index // steps, weighted)

        model.gradient_rows(
            n,
            copies * steps,
            path_point,
            target,
            accumulate,
            activation=method.activation,
            device=inputs.device,
        )
        total = total.view(n, copies, *inputs.shape[1:])
        if method.multiply_by_inputs:
            total = total * (all_copies(perturb, n, copies, inputs.device) - baselines[:, None])
        return total

    return run


def copy_attributor(method: Method) -> CopyFunction:
    """The function attributing perturbed copies with ``method``; an error if it has none."""
    if isinstance(method, CopyAttributor):
        return method.copy_attributions
    if isinstance(method, Saliency):
        return _saliency_copies(method)
    if isinstance(method, IntegratedGradients):
        return _integrated_gradients_copies(method)
    from faithmap.core.registry import METHODS

    supported = [
        name
        for name in METHODS.names()
        if issubclass(METHODS[name], (Saliency, IntegratedGradients))
        or callable(getattr(METHODS[name], "copy_attributions", None))
    ]
    raise InvalidParameterError(
        f"The method {method.name!r} cannot attribute perturbed copies of its inputs as "
        "gradient rows, so it cannot be the base of an ensemble such as SmoothGrad. Supported "
        f"bases: {', '.join(supported)}."
    )
