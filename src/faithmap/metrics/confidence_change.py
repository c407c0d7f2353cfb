"""Average drop and increase in confidence (Chattopadhay et al. 2018, Grad-CAM++).

The explanation map, min-max normalised to [0, 1] per image, is used as a soft keep-mask:
the "explanation image" is ``E = fill + m * (x - fill)`` (with the default fill 0, the paper's
``m * x``), built by the removal engine's blend. With ``Y`` the target score of ``x`` and
``O`` that of ``E``:

* :func:`average_drop`: ``max(0, Y - O) / Y`` per image (the paper reports the mean, in %);
  lower is better.
* :func:`average_increase`: 1 where ``O > Y`` (the paper's "increase in confidence", the mean
  in %); higher is better.

Quantus 0.6.0 has neither (Xplique's ``AverageDropMetric`` and ``AverageIncreaseMetric`` do).

References
----------
Chattopadhay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++: Generalized Gradient-Based
Visual Explanations for Deep Convolutional Networks", WACV 2018.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import ModelLike
from faithmap.core.readout import Activation
from faithmap.core.registry import register_metric
from faithmap.core.removal import FillLike, Removal, make_removal, score_removals
from faithmap.core.targets import TargetLike
from faithmap.metrics.parameters import REMOVAL_CONSTRAINTS

Direction = Literal["drop", "increase"]
"""Which change in confidence a metric counts: the relative drop, or whether it rose."""


def _confidence_change(
    owner: str,
    direction: Direction,
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    target: TargetLike,
    fill: FillLike | Removal,
    activation: Activation,
) -> MetricResult:
    """Score ``Y`` of each input and ``O`` of its explanation image in one stream, and compare.

    ``"drop"``: ``max(0, Y - O) / Y`` (NaN where ``Y <= 0``), lower is better; ``"increase"``:
    1 where ``O > Y``, higher is better. NaN where the map is constant (it has no min-max
    normalisation).
    """
    removal = make_removal(fill)
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, x = prepared.model, prepared.x
    maps = prepared.attributions.sum(1, keepdim=True)
    low = maps.amin(dim=(1, 2, 3), keepdim=True)
    spread = maps.amax(dim=(1, 2, 3), keepdim=True) - low
    defined = spread.flatten() > 0
    soft = (maps - low) / spread.where(spread > 0, 1)
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, prepared.target)

        def keep(samples: Tensor, indices: Tensor) -> Tensor:
            explained = (indices == 1).to(soft.dtype).view(-1, 1, 1, 1)
            return 1 - explained * (1 - soft[samples])

        scores = score_removals(
            wrapped, x, resolved, removal.substrate(x), keep, 2, activation=activation
        )
    clean, shown = scores[:, 0], scores[:, 1]
    if direction == "drop":
        values = ((clean - shown).clamp_min(0) / clean).where(defined & (clean > 0), torch.nan)
    else:
        values = (shown > clean).to(clean.dtype).where(defined, torch.nan)
    home = prepared.home
    return MetricResult(
        metric=owner,
        values=values.to(home),
        higher_is_better=direction == "increase",
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "fill": removal.describe(),
            "normalisation": "min-max",
            "activation": activation,
            "target": prepared.rule,
        },
        cost=tracker.cost,
    )


@register_metric(
    "average_drop",
    constraints=REMOVAL_CONSTRAINTS,
    higher_is_better=False,
    constant_model=0.0,
)
def average_drop(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = 0.0,
    activation: Activation = "softmax",
) -> MetricResult:
    """Relative drop of the target score when only the explanation image is shown.

    ``max(0, Y - O) / Y`` per image, in [0, 1] for positive scores; lower is better (the
    paper's "Average Drop %" is 100 times the mean). NaN where the map is constant or
    ``Y <= 0`` (use ``activation="softmax"``). A model that ignores its input gives 0.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``: channels summed, then min-max normalised per image
        (a signed map's most negative pixel becomes 0; Grad-CAM's maps are already >= 0).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    fill : str, float, callable or Removal, default=0.0
        What the map's zeros become (the paper multiplies the image by the map: 0).
    activation : {"softmax", "logits"}, default="softmax"

    Returns
    -------
    MetricResult
        Cost: 2 forward passes per sample (plus target resolution).

    References
    ----------
    Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based Visual Explanations for Deep
    Convolutional Networks", WACV 2018.
    """
    return _confidence_change(
        "average_drop", "drop", model, inputs, explanation, target, fill, activation
    )


@register_metric(
    "average_increase",
    constraints=REMOVAL_CONSTRAINTS,
    higher_is_better=True,
    constant_model=0.0,
)
def average_increase(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fill: FillLike | Removal = 0.0,
    activation: Activation = "softmax",
) -> MetricResult:
    """1 where the explanation image scores higher than the image itself, else 0.

    The paper's "% Increase in Confidence" is 100 times the mean; higher is better. NaN where
    the map is constant. A model that ignores its input gives 0 (its score never rises).

    Parameters are those of :func:`average_drop`.

    Returns
    -------
    MetricResult
        Cost: 2 forward passes per sample (plus target resolution).

    References
    ----------
    Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based Visual Explanations for Deep
    Convolutional Networks", WACV 2018.
    """
    return _confidence_change(
        "average_increase", "increase", model, inputs, explanation, target, fill, activation
    )
