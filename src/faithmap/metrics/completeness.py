"""Completeness (Sundararajan et al. 2017): do the attributions add up to the change of output
between the input and the baseline?

The value is the gap ``|sum(a) - (f(x) - f(baseline))|`` per image; 0 for a complete method
(Integrated Gradients with the same baseline, up to its integration error). The baseline is the
image with every pixel filled by the removal engine.

References
----------
Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import ModelLike
from faithmap.core.readout import Activation
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, make_removal, score_removals
from faithmap.core.targets import TargetLike
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS


@dataclass(frozen=True, kw_only=True)
class CompletenessResult(MetricResult):
    """The completeness gap with its two sides.

    Attributes
    ----------
    attribution_sum : Tensor
        ``(N,)`` the sum of each map (float64).
    output_change : Tensor
        ``(N,)`` ``f(x) - f(baseline)`` of the target (float64).
    """

    attribution_sum: Tensor
    output_change: Tensor


@register_metric(
    "completeness",
    constraints=REMOVAL_CONSTRAINTS,
    higher_is_better=False,
)
def completeness(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = 0.0,
    activation: Activation = "logits",
) -> CompletenessResult:
    """Gap between the attributions' sum and the output change from the baseline to the input.

    ``|sum(a) - (f(x) - f(baseline))|`` per image, lower is better, 0 for a complete map. The
    map is summed over every element it has (all channels of a ``(N, C, H, W)`` map).

    Differences from Quantus 0.6.0: Quantus' ``Completeness`` returns the boolean
    ``sum(a) == f(x) - f(baseline)``, an exact floating-point equality (so float rounding
    alone makes a complete map fail), and by default first divides the map by its largest
    magnitude (``normalise=True``), after which only a map already scaled that way can pass.
    Its boolean is faithmap's ``value == 0`` where both compute the same sums exactly (with
    ``normalise=False``). Quantus' ``"black"`` baseline is each image's minimum; faithmap's
    default fill is the constant 0 (Integrated Gradients' default baseline).

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    fill : str, float, callable or Removal, default=0.0
        The baseline: what every pixel becomes.
    activation : {"logits", "softmax"}, default="logits"
        Completeness is stated for the function explained, usually the logit.

    Returns
    -------
    CompletenessResult
        Cost: 2 forward passes per sample (plus target resolution).

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """
    owner = "completeness"
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)

        def keep(samples: Tensor, indices: Tensor) -> Tensor:
            return (indices == 0).to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])

        scores = score_removals(
            wrapped, x, resolved, removal.substrate(x), keep, 2, activation=activation
        )
    total = prepared.attributions.flatten(1).double().sum(1)
    change = (scores[:, 0] - scores[:, 1]).double()
    home = prepared.home
    return CompletenessResult(
        metric=owner,
        values=(total - change).abs().to(home),
        attribution_sum=total.to(home),
        output_change=change.to(home),
        higher_is_better=False,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={"fill": removal.describe(), "activation": activation, "target": prepared.rule},
        cost=tracker.cost,
    )
