"""Infidelity (Yeh et al. 2019) with Captum's semantics, and optional optimal rescaling.

``INFD = E_I[(I . phi - (f(x) - f(x - I)))**2]`` over random perturbations ``I``; the clean
input is scored in the same batches as the perturbed ones, and every draw is made per
(sample, draw) from the seed, so the value does not depend on the model's batch size.

References
----------
Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.constraints import BOOLEAN, SEED, InstanceOf, Interval
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_metric
from faithmap.core.targets import TARGET, TargetLike
from faithmap.errors import ShapeError
from faithmap.metrics.draws import key_table, row_normal


def gaussian_perturbations(inputs: Tensor, n_samples: int, noise: float, seed: int) -> Tensor:
    """The perturbations :func:`infidelity` draws by default, ``(N, n_samples, *inputs[0])``.

    Exposed so that the same ``I`` can be handed to another implementation.
    """
    n = inputs.shape[0]
    keys = key_table(seed, n, n_samples, inputs.device).flatten()
    draws = row_normal(inputs.shape[1:], keys, inputs.dtype)
    return noise * draws.view(n, n_samples, *inputs.shape[1:])


@register_metric(
    "infidelity",
    constraints={
        "target": TARGET,
        "n_samples": [Interval(int, 1)],
        "noise": [Interval(float, 0.0)],
        "perturbations": [None, InstanceOf((Tensor,), "a tensor (N, n_samples, *input shape)")],
        "normalize": [BOOLEAN],
        "activation": [ACTIVATION],
        "seed": [SEED],
    },
    higher_is_better=False,
    constant_model=0.0,
)
def infidelity(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    n_samples: int = 50,
    noise: float = 0.1,
    perturbations: Tensor | None = None,
    normalize: bool = True,
    activation: Activation = "logits",
    seed: int = 0,
) -> MetricResult:
    """Infidelity: mean of ``(I . phi - (f(x) - f(x - I)))**2`` over random perturbations ``I``.

    Lower is better. With ``normalize`` the attributions are first rescaled by the optimal
    ``beta = sum(a * d) / sum(a**2)`` of each sample (Captum's ``normalize=True``, Yeh et al.'s
    rescaling), which makes the value independent of the attributions' scale; a model that
    ignores its input then scores 0.

    Parameters
    ----------
    model, inputs
        The model and a batch ``(N, ...)``.
    explanation : Explanation or Tensor
        Attributions broadcastable to the inputs (an ``(N, 1, H, W)`` map counts for every
        channel of its pixel).
    target : None, int, tensor or callable
    n_samples : int, default=50
        Perturbations per sample (Captum: 10; Yeh et al.: 10,000).
    noise : float, default=0.1
        Standard deviation of the Gaussian ``I`` in input units (Captum's docstring: 0.003).
    perturbations : Tensor or None, default=None
        Explicit ``I`` of shape ``(N, n_samples, *inputs.shape[1:])``; ``None`` draws
        :func:`gaussian_perturbations` from ``seed``.
    normalize : bool, default=True
        Optimal rescaling of the attributions (Captum's default is False).
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    Returns
    -------
    MetricResult
        Cost: ``n_samples + 1`` forward passes per sample (plus target resolution).

    References
    ----------
    Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS 2019.
    """
    owner = "infidelity"
    prepared = prepare(owner, model, inputs, explanation, target)
    wrapped, checked, x = prepared.model, prepared.inputs, prepared.x
    attributions, target, rule = prepared.attributions, prepared.target, prepared.rule
    device = x.device
    phi = attributions.detach().to(device=device, dtype=x.dtype)
    fits = phi.dim() == x.dim() and all(
        a in (1, b) for a, b in zip(phi.shape, x.shape, strict=True)
    )
    if phi.shape[0] != x.shape[0] or not fits:
        raise ShapeError(
            f"The attributions for {owner} must broadcast to the inputs {tuple(x.shape)}. Got "
            f"{tuple(phi.shape)} instead."
        )
    expected = (x.shape[0], n_samples, *x.shape[1:])
    if perturbations is not None and tuple(perturbations.shape) != expected:
        raise ShapeError(
            f"The 'perturbations' of {owner} must have shape {expected} (N, n_samples, ...). "
            f"Got {tuple(perturbations.shape)} instead."
        )
    given = None if perturbations is None else perturbations.detach().to(device, x.dtype)
    products = torch.zeros(x.shape[0], n_samples + 1, dtype=torch.float64, device=device)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, target)
        keys = key_table(seed, x.shape[0], n_samples, device)

        def rows(samples: Tensor, indices: Tensor) -> Tensor:
            draws = (indices - 1).clamp_min(0)
            if given is not None:
                shift = given[samples, draws]
            else:
                shift = row_normal(x.shape[1:], keys[samples, draws], x.dtype).mul_(noise)
            shift.masked_fill_((indices == 0).view(-1, *[1] * (x.dim() - 1)), 0)
            dims = tuple(range(1, x.dim()))
            products[samples, indices] = (shift * phi[samples]).sum(dims, dtype=torch.float64)
            return x.index_select(0, samples).sub_(shift)

        scores = wrapped.score_rows(
            x.shape[0], n_samples + 1, rows, resolved, activation=activation, device=device
        )
    dot = products[:, 1:]
    drops = (scores[:, :1] - scores[:, 1:]).double()
    if normalize:
        denominator = dot.pow(2).sum(1, keepdim=True)
        beta = (dot * drops).sum(1, keepdim=True) / torch.where(denominator != 0, denominator, 1)
        dot = beta * dot
    home = checked.device
    return MetricResult(
        metric=owner,
        values=(dot - drops).pow(2).mean(1).to(home),
        higher_is_better=False,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "n_samples": n_samples,
            "perturbation": "given" if given is not None else f"gaussian({noise:g})",
            "normalize": normalize,
            "activation": activation,
            "target": rule,
            "seed": seed,
        },
        cost=tracker.cost,
    )
