"""Robustness metrics: how much does the explanation move when the input barely moves?

Each metric re-runs the explaining method on ``n_samples`` noisy copies of every input, all
copies of all samples in one call to the method's ``explain``, for the target the explanation
was made for (kept fixed, as Captum does, even where the noise flips the prediction):

* :func:`max_sensitivity` / :func:`avg_sensitivity` (Yeh et al. 2019): the largest / mean
  ``||phi(x + d) - phi(x)|| / ||phi(x)||`` over uniform noise ``d`` in the L-inf ball of radius
  ``radius`` (Captum's ``sensitivity_max``; a zero ``||phi(x)||`` counts as 1).
* :func:`local_lipschitz` (Alvarez-Melis & Jaakkola 2018): the largest
  ``||phi(x + d) - phi(x)|| / ||d||`` over Gaussian noise ``d`` (Quantus' estimate).

The method is re-created from the explanation's record (``Explanation.method`` and
``.config``) unless ``method=`` is given; ``phi(x)`` is the explanation as given.

References
----------
Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of Explanations",
NeurIPS 2019. Alvarez-Melis, Jaakkola, "On the Robustness of Interpretability Methods", ICML
Workshop on Human Interpretability 2018.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints, Interval
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, TargetRule
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import method_of, register_metric
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_inputs
from faithmap.metrics.draws import key_table, row_normal, row_uniform
from faithmap.metrics.parameters import REEXPLAIN_CONSTRAINTS
from faithmap.metrics.reexplain import (
    MethodLike,
    check_same_shape,
    explain_quietly,
    explained_target,
    original_maps,
)


def input_perturbations(
    inputs: Tensor, n_samples: int, scale: float, seed: int, *, uniform: bool
) -> Tensor:
    """The noise the robustness metrics draw, ``(N, n_samples, *inputs[0])``.

    ``uniform``: U[-scale, scale] per element (the L-inf ball of radius ``scale``); otherwise
    Gaussian with standard deviation ``scale``. Exposed so that the same noise can be handed to
    another implementation.
    """
    n = inputs.shape[0]
    keys = key_table(seed, n, n_samples, inputs.device).flatten()
    draws = (row_uniform if uniform else row_normal)(inputs.shape[1:], keys, inputs.dtype)
    return scale * draws.view(n, n_samples, *inputs.shape[1:])


@dataclass(frozen=True)
class Reexplained:
    """The explanation given and its re-runs on noisy copies of the inputs.

    Attributes
    ----------
    original : Tensor
        ``(N, ...)`` the explanation given, on the model's device.
    noisy : Tensor
        ``(N, n_samples, ...)`` the explanation of each noisy copy.
    shifts : Tensor
        ``(N, n_samples, *inputs[0])`` the noise added (:func:`input_perturbations`).
    target : Tensor or None
        The classes explained (``None`` for a callable target).
    rule : {"explained", "predicted", "given"}
        How the target was chosen.
    cost : Cost
        What the target resolution and the re-runs spent.
    method : str
        The name of the method re-run.
    """

    original: Tensor
    noisy: Tensor
    shifts: Tensor
    target: Tensor | None
    rule: TargetRule
    cost: Cost
    method: str

    def result(
        self,
        metric: str,
        values: Tensor,
        home: torch.device,
        choices: dict[str, Any],
        *,
        cost: Cost | None = None,
    ) -> MetricResult:
        """A lower-is-better result of ``values`` on ``home``, the method named first in its
        choices; ``cost`` defaults to what the re-runs spent."""
        return MetricResult(
            metric=metric,
            values=values.to(home),
            higher_is_better=False,
            target=None if self.target is None else self.target.to(home),
            choices={"method": self.method, **choices},
            cost=self.cost if cost is None else cost,
        )


def reexplain_with_noise(
    owner: str,
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    target: TargetLike,
    method: MethodLike,
    n_samples: int,
    scale: float,
    seed: int,
    *,
    uniform: bool,
) -> Reexplained:
    """Re-run the explaining method on ``n_samples`` noisy copies of every input.

    The noise is :func:`input_perturbations` (``uniform``: the L-inf ball of radius ``scale``,
    else Gaussian of standard deviation ``scale``); the target is the explanation's, kept fixed
    for every copy. The robustness and relative stability metrics start here.
    """
    explainer = method_of(explanation, method, owner)
    wrapped = Model.wrap(model)
    checked = check_inputs(inputs, owner)
    original = original_maps(owner, explanation, checked)
    target, rule = explained_target(explanation, target)
    device = wrapped.device or checked.device
    x = checked.detach().to(device)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, target)
        shifts = input_perturbations(x, n_samples, scale, seed, uniform=uniform)
        chosen = resolved.score_fn if resolved.classes is None else resolved.classes
        # One draw at a time, all N images together: a method holding per-image data (regions
        # with one label map per image) lines up with the batch it was made for.
        parts = []
        for draw in range(n_samples):
            part = explain_quietly(explainer, wrapped, x + shifts[:, draw], chosen)
            check_same_shape(part, original.shape, explainer)
            parts.append(part.to(device))
        again = torch.stack(parts, dim=1)
    return Reexplained(
        original=original.to(device=device, dtype=again.dtype),
        noisy=again,
        shifts=shifts,
        target=resolved.classes,
        rule=rule,
        cost=tracker.cost,
        method=explainer.name,
    )


def _sensitivity(
    metric: str,
    model: Any,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    target: TargetLike,
    method: MethodLike,
    n_samples: int,
    radius: float,
    seed: int,
) -> MetricResult:
    run = reexplain_with_noise(
        metric, model, inputs, explanation, target, method, n_samples, radius, seed, uniform=True
    )
    difference = (run.noisy - run.original[:, None]).flatten(2).double().norm(dim=2)
    scale = run.original.flatten(1).double().norm(dim=1, keepdim=True)
    ratios = difference / torch.where(scale == 0, 1.0, scale)
    values = ratios.amax(1) if metric == "max_sensitivity" else ratios.mean(1)
    return run.result(
        metric,
        values,
        inputs.device,
        {"radius": radius, "n_samples": n_samples, "norm": "fro", "target": run.rule, "seed": seed},
    )


SENSITIVITY_CONSTRAINTS: Constraints = {
    **REEXPLAIN_CONSTRAINTS,
    "n_samples": [Interval(int, 1)],
    "radius": [Interval(float, 0.0, closed="right")],
}
"""The parameters max_sensitivity and avg_sensitivity share (and the relative stability
metrics, which draw the same noise)."""


@register_metric(
    "max_sensitivity",
    constraints=SENSITIVITY_CONSTRAINTS,
    higher_is_better=False,
)
def max_sensitivity(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
) -> MetricResult:
    """Largest relative change of the explanation under uniform noise of radius ``radius``.

    ``max_j ||phi(x + d_j) - phi(x)||_F / ||phi(x)||_F`` with ``d_j ~ U[-radius, radius]``
    per element. Lower is better; 0 for an explanation that does not move (for example
    saliency of a model that ignores its input).

    Parameters
    ----------
    model, inputs
        The model and a batch ``(N, ...)``.
    explanation : Explanation or Tensor
        ``phi(x)``; an Explanation also names the method to re-run.
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class at ``x``.
    method : Method, str or None, default=None
        The method to re-run; ``None``: the explanation's own, with its config.
    n_samples : int, default=10
        Noisy copies per sample (Captum: 10; Yeh et al.: 50; Quantus: 200).
    radius : float, default=0.02
        L-inf radius in the model's input units (Captum: 0.02; Yeh et al., Quantus: 0.2).
    seed : int, default=0

    Returns
    -------
    MetricResult
        Cost: ``n_samples`` explanations per sample.

    References
    ----------
    Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS 2019.
    """
    return _sensitivity(
        "max_sensitivity", model, inputs, explanation, target, method, n_samples, radius, seed
    )


@register_metric(
    "avg_sensitivity",
    constraints=SENSITIVITY_CONSTRAINTS,
    higher_is_better=False,
)
def avg_sensitivity(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 10,
    radius: float = 0.02,
    seed: int = 0,
) -> MetricResult:
    """Mean relative change of the explanation under uniform noise of radius ``radius``.

    The mean over the draws of the ratio :func:`max_sensitivity` maximises; same parameters.
    Lower is better.

    References
    ----------
    Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS 2019.
    """
    return _sensitivity(
        "avg_sensitivity", model, inputs, explanation, target, method, n_samples, radius, seed
    )


@register_metric(
    "local_lipschitz",
    constraints={
        **REEXPLAIN_CONSTRAINTS,
        "n_samples": [Interval(int, 1)],
        "noise": [Interval(float, 0.0, closed="right")],
        "normalize": [BOOLEAN],
    },
    higher_is_better=False,
)
def local_lipschitz(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 200,
    noise: float = 0.1,
    normalize: bool = False,
    seed: int = 0,
) -> MetricResult:
    """Local Lipschitz estimate: ``max_j ||phi(x + d_j) - phi(x)||_2 / (||d_j||_2 + 1e-10)``.

    ``d_j`` is Gaussian with standard deviation ``noise``. Lower is better; 0 for an
    explanation that does not move. Raw maps reward methods with small values; ``normalize``
    divides every map by its largest absolute value first (Quantus' default).

    Parameters
    ----------
    model, inputs, explanation, target, method, seed
        As in :func:`max_sensitivity`.
    n_samples : int, default=200
        Noisy copies per sample (Quantus: 200).
    noise : float, default=0.1
        Standard deviation of the Gaussian noise, in input units (Quantus: 0.1).
    normalize : bool, default=False

    Returns
    -------
    MetricResult
        Cost: ``n_samples`` explanations per sample.

    References
    ----------
    Alvarez-Melis, Jaakkola, "On the Robustness of Interpretability Methods", ICML Workshop on
    Human Interpretability in Machine Learning 2018.
    """
    owner = "local_lipschitz"
    run = reexplain_with_noise(
        owner, model, inputs, explanation, target, method, n_samples, noise, seed, uniform=False
    )
    original, noisy = run.original.double(), run.noisy.double()
    if normalize:
        original = original / original.flatten(1).abs().amax(1).clamp_min(1e-30).view(
            -1, *[1] * (original.dim() - 1)
        )
        noisy = noisy / noisy.flatten(2).abs().amax(2).clamp_min(1e-30).view(
            *noisy.shape[:2], *[1] * (noisy.dim() - 2)
        )
    difference = (noisy - original[:, None]).flatten(2).norm(dim=2)
    distance = run.shifts.flatten(2).double().norm(dim=2)
    values = (difference / (distance + 1e-10)).amax(1)
    choices = {
        "noise": noise,
        "n_samples": n_samples,
        "normalize": normalize,
        "norm": "l2",
        "target": run.rule,
        "seed": seed,
    }
    return run.result(owner, values, inputs.device, choices)
