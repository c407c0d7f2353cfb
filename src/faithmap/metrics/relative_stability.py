"""Relative stability: how much does the explanation move, relative to how much the model moves?

Each metric re-runs the explaining method on ``n_samples`` noisy copies ``x'`` of every input
(uniform noise in the L-inf ball of radius ``radius``, drawn by
:func:`~faithmap.metrics.robustness.input_perturbations`, the target kept fixed) and reports the
largest ratio, over the copies that keep the model's predicted class, of the relative change of
the explanation ``||(e_x - e_x') / e_x||_2`` to a relative change of the model:

* :func:`relative_input_stability` (RIS): of the input, ``||(x - x') / x||_2``;
* :func:`relative_representation_stability` (RRS): of the output of one internal layer ``L``,
  ``||(L_x - L_x') / L_x||_2``;
* :func:`relative_output_stability` (ROS): of the model's outputs (logits), ``||h_x - h_x'||_2``.

Every division by an element that is exactly 0 divides by ``eps_min`` instead, and the
denominator is at least ``eps_min`` (Agarwal et al., Eqs. 2-5). Lower is better.

Differences from Quantus 0.6.0 (``RelativeInputStability`` and its siblings), with the same
noise the values agree: Quantus draws one-sided noise ``U[0.02, 0.2]``; it sets a sample to NaN
as soon as *one* copy changes the prediction (``np.max`` over NaN), where here such copies are
left out of the maximum (NaN only when every copy changed it, the paper's constraint); it adds
``eps_min`` to a denominator only when it is exactly 0, where here it is the floor
``max(norm, eps_min)`` (the same unless ``0 < norm < eps_min``).

References
----------
Agarwal, Johnson, Pawelczyk, Krishna, Saxena, Zitnik, Lakkaraju, "Rethinking Stability for
Attribution-based Explanations", ICLR 2022 Workshop on PAIR2Struct (arXiv:2203.06877).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from faithmap.core.constraints import BOOLEAN, STRING, Constraints, Interval
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import register_metric
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.metrics.reexplain import MethodLike
from faithmap.metrics.robustness import SENSITIVITY_CONSTRAINTS, reexplain_with_noise

Reference = Literal["input", "representation", "output"]


def _relative_norm(before: Tensor, after: Tensor, eps_min: float) -> Tensor:
    """``||(before - after) / before||_2`` per row, dividing by ``eps_min`` where ``before`` is 0.

    ``before`` is ``(N, ...)`` and ``after`` ``(N, S, ...)``; returns ``(N, S)``.
    """
    base = before.double()[:, None]
    safe = torch.where(base == 0, torch.full_like(base, eps_min), base)
    norms: Tensor = ((base - after.double()) / safe).flatten(2).norm(dim=2)
    return norms


class _Representation(nn.Module):
    """The model, returning the flattened output of its submodule ``layer`` instead."""

    def __init__(self, module: nn.Module, layer: str) -> None:
        super().__init__()
        self.module = module
        self.layer = layer
        self.captured: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        def keep(_: nn.Module, __: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise ModelError(
                    f"The layer {self.layer!r} returns {type(output).__name__}, not a tensor, "
                    "so it has no representation to compare. Pass a layer whose output is one "
                    "tensor."
                )
            self.captured.append(output)

        handle = self.module.get_submodule(self.layer).register_forward_hook(keep)
        try:
            self.captured.clear()
            self.module(x)
        finally:
            handle.remove()
        if len(self.captured) != 1:
            raise ModelError(
                f"The layer {self.layer!r} ran {len(self.captured)} times in one forward pass; "
                "relative_representation_stability needs a layer that runs once."
            )
        return self.captured.pop().flatten(1)


def _representation_model(wrapped: Model, layer: str) -> Model:
    """A :class:`Model` like ``wrapped`` whose outputs are the flattened outputs of ``layer``."""
    module = wrapped.module
    if not isinstance(module, nn.Module):
        raise ModelError(
            "relative_representation_stability reads an internal layer, so it needs a torch "
            f"nn.Module. Got {type(module).__name__} instead."
        )
    names = {name for name, _ in module.named_modules() if name}
    if layer not in names:
        shown = ", ".join(sorted(names)[:12]) or "none"
        raise InvalidParameterError(
            f"The 'layer' parameter of relative_representation_stability must name a submodule "
            f"of the model. Got {layer!r}; the model has: {shown}."
        )
    return wrapped.like(_Representation(module, layer))


def _relative_stability(
    owner: str,
    reference: Reference,
    model: Any,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    target: TargetLike,
    method: MethodLike,
    n_samples: int,
    radius: float,
    eps_min: float,
    keep_prediction: bool,
    seed: int,
    layer: str | None = None,
) -> MetricResult:
    wrapped = Model.wrap(model)
    hidden = None if layer is None else _representation_model(wrapped, layer)
    run = reexplain_with_noise(
        owner, wrapped, inputs, explanation, target, method, n_samples, radius, seed, uniform=True
    )
    x = inputs.detach().to(run.shifts.device, run.shifts.dtype)
    n = x.shape[0]
    moved = (x[:, None] + run.shifts).flatten(0, 1)  # the copies the method explained
    changes = _relative_norm(run.original, run.noisy, eps_min)
    cost = run.cost
    if keep_prediction or reference == "output":
        with wrapped.ledger.track() as tracker:
            before = wrapped.outputs(x).double()
            after = wrapped.outputs(moved).double().view(n, n_samples, -1)
        cost = cost + tracker.cost
    if reference == "input":
        denominator = _relative_norm(x, moved.view(n, n_samples, *x.shape[1:]), eps_min)
    elif reference == "output":
        denominator = (before.flatten(1)[:, None] - after).norm(dim=2)
    else:
        assert hidden is not None
        with hidden.ledger.track() as tracker:
            inner = hidden.outputs(x)
            inner_moved = hidden.outputs(moved).view(n, n_samples, -1)
        cost = cost + tracker.cost
        denominator = _relative_norm(inner, inner_moved, eps_min)
    ratios = changes / denominator.clamp_min(eps_min)
    if keep_prediction:
        same = before.flatten(1).argmax(1)[:, None] == after.argmax(2)
        ratios = torch.where(same, ratios, -torch.inf)
    # the largest ratio over the copies kept; NaN where none was kept
    values = ratios.amax(1)
    values = torch.where(values == -torch.inf, torch.nan, values)
    choices: dict[str, Any] = {
        "radius": radius,
        "noise": "uniform",
        "n_samples": n_samples,
        "eps_min": eps_min,
        "keep_prediction": keep_prediction,
        "norm": "l2",
        "target": run.rule,
        "seed": seed,
    }
    if layer is not None:
        choices["layer"] = layer
    return run.result(owner, values, inputs.device, choices, cost=cost)


STABILITY_CONSTRAINTS: Constraints = {
    **SENSITIVITY_CONSTRAINTS,
    "eps_min": [Interval(float, 0.0, closed="right")],
    "keep_prediction": [BOOLEAN],
}
"""The parameters the three relative stability metrics share."""


@register_metric(
    "relative_input_stability",
    constraints=STABILITY_CONSTRAINTS,
    higher_is_better=False,
)
def relative_input_stability(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 50,
    radius: float = 0.05,
    eps_min: float = 1e-6,
    keep_prediction: bool = True,
    seed: int = 0,
) -> MetricResult:
    """RIS: ``max_x' ||(e_x - e_x') / e_x||_2 / max(||(x - x') / x||_2, eps_min)``.

    Lower is better; 0 for an explanation that does not move.

    Parameters
    ----------
    model, inputs
        The model and a batch ``(N, ...)``.
    explanation : Explanation or Tensor
        ``e_x``; an Explanation also names the method to re-run.
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class at ``x``;
        kept for every noisy copy.
    method : Method, str or None, default=None
        The method to re-run; ``None``: the explanation's own, with its config.
    n_samples : int, default=50
        Noisy copies per sample (Quantus: 200; OpenXAI: 1000 drawn, at most 100 kept).
    radius : float, default=0.05
        Noise ``U[-radius, radius]`` per element, in the model's input units.
    eps_min : float, default=1e-6
        Stands in for an exactly zero element in a division, and floors the denominator.
    keep_prediction : bool, default=True
        Leave out copies whose predicted class (argmax of the outputs) differs from that of
        ``x``; a sample none of whose copies keeps it gets NaN. ``False``: every copy counts.
    seed : int, default=0

    Returns
    -------
    MetricResult
        Cost: ``n_samples`` explanations and ``n_samples + 1`` forward passes per sample.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    return _relative_stability(
        "relative_input_stability", "input", model, inputs, explanation, target, method,
        n_samples, radius, eps_min, keep_prediction, seed,
    )  # fmt: skip


@register_metric(
    "relative_output_stability",
    constraints=STABILITY_CONSTRAINTS,
    higher_is_better=False,
)
def relative_output_stability(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 50,
    radius: float = 0.05,
    eps_min: float = 1e-6,
    keep_prediction: bool = True,
    seed: int = 0,
) -> MetricResult:
    """ROS: ``max_x' ||(e_x - e_x') / e_x||_2 / max(||h_x - h_x'||_2, eps_min)``.

    ``h`` is the model's output as it returns it (logits for a classifier). Lower is better;
    0 for an explanation that does not move.

    Parameters
    ----------
    model, inputs, explanation, target, method, n_samples, radius, eps_min, keep_prediction, seed
        As in :func:`relative_input_stability`.

    Returns
    -------
    MetricResult
        Cost: ``n_samples`` explanations and ``n_samples + 1`` forward passes per sample.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    return _relative_stability(
        "relative_output_stability", "output", model, inputs, explanation, target, method,
        n_samples, radius, eps_min, keep_prediction, seed,
    )  # fmt: skip


@register_metric(
    "relative_representation_stability",
    constraints={**STABILITY_CONSTRAINTS, "layer": [STRING]},
    higher_is_better=False,
)
def relative_representation_stability(
    model: Model | nn.Module,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    layer: str,
    target: TargetLike = None,
    method: MethodLike = None,
    n_samples: int = 50,
    radius: float = 0.05,
    eps_min: float = 1e-6,
    keep_prediction: bool = True,
    seed: int = 0,
) -> MetricResult:
    """RRS: ``max_x' ||(e_x - e_x') / e_x||_2 / max(||(L_x - L_x') / L_x||_2, eps_min)``.

    ``L`` is the flattened output of the submodule named ``layer`` (a name from the model's
    ``named_modules()``, such as ``"features.2"``), read with a forward hook that is removed
    afterwards. Lower is better.

    Parameters
    ----------
    layer : str
        The internal layer whose output is the representation (Agarwal et al. use the first
        hidden layer after its activation; Quantus takes every layer unless told).
    model, inputs, explanation, target, method, n_samples, radius, eps_min, keep_prediction, seed
        As in :func:`relative_input_stability`.

    Returns
    -------
    MetricResult
        Cost: ``n_samples`` explanations and ``2 (n_samples + 1)`` forward passes per sample.

    References
    ----------
    Agarwal et al., "Rethinking Stability for Attribution-based Explanations", 2022.
    """
    return _relative_stability(
        "relative_representation_stability", "representation", model, inputs, explanation,
        target, method, n_samples, radius, eps_min, keep_prediction, seed, layer,
    )  # fmt: skip
