"""A background set of rows as the baseline of a tabular explanation.

A removed column has to become *something*. For rows, shap's answer is a background set
(typically a sample of the training data), used in one of two ways:

- ``"mean"``: the baseline is one row, the background's column means (one model pass per
  coalition or path point);
- ``"expectation"``: the value of a coalition is the mean score over the background rows, the
  removed columns taken from each background row in turn, as ``shap.KernelExplainer`` does
  (``K`` times the passes for ``K`` background rows).

KernelSHAP, LIME and feature ablation are linear in the scores they fit, with the same
coalitions for every input, so the expectation is computed as one batched explanation of every
(input, background row) pair, whose attributions are averaged over the background rows: the
result is exactly the method applied to the expected value function. For integrated gradients
the same average gives integrated gradients averaged over the baselines (completeness then holds
with respect to the mean background score). Sobol and HSIC indices are not linear in the scores:
for them the expectation is the mean of their indices against each background row.

References
----------
Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017;
Janzing, Minorics, Bloebaum, "Feature relevance quantification in explainable AI: A causal
problem", AISTATS 2020.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

from torch import Tensor

from faithmap import errors
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_choice, check_inputs
from faithmap.errors import InvalidParameterError, ShapeError

Mode = Literal["expectation", "mean"]
MODES = ("expectation", "mean")


class BackgroundFill:
    """A fill for :class:`~faithmap.core.removal.Removal`: background rows, tiled over the inputs.

    Row ``j`` of the inputs gets background row ``j mod K``, so inputs repeated ``K`` times
    each (``repeat_interleave``) meet every background row once. With one row (the mean) every
    input gets that row.
    """

    def __init__(self, rows: Tensor, name: str) -> None:
        self.rows = rows
        self.__name__ = name

    def __repr__(self) -> str:
        return self.__name__

    def __call__(self, inputs: Tensor) -> Tensor:
        count = self.rows.shape[0]
        if inputs.dim() != 2 or inputs.shape[0] % count or inputs.shape[1] != self.rows.shape[1]:
            raise ShapeError(
                f"A background of {count} rows of {self.rows.shape[1]} columns fills rows "
                f"(N * {count}, {self.rows.shape[1]}). Got inputs {tuple(inputs.shape)} instead."
            )
        return self.rows.to(inputs).repeat(inputs.shape[0] // count, 1)


def baseline_field(method: Method) -> str:
    """The field of ``method`` that holds its baseline: ``fill``, ``baseline_tensor`` or
    ``background``."""
    fields = getattr(method, "__dataclass_fields__", {})
    for name in ("background", "baseline_tensor", "fill"):
        if name in fields:
            return name
    raise InvalidParameterError(
        f"The method {method.name!r} uses no baseline, so a background set has no effect on it. "
        "Drop the background, or use kernel_shap, lime, feature_ablation, "
        "integrated_gradients or gradient_shap."
    )


@contextmanager
def _quiet_constant_maps() -> Iterator[None]:
    """No constant-map warning for the per-pair explanations of the expectation: the pair of a
    row with an identical background row has an all-zero map by definition; only the average
    over the background is the explanation."""
    category = getattr(errors, "ConstantMapWarning", None)
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        yield


def check_background(background: Any, features: int, owner: str) -> Tensor:
    """``background`` as a finite float tensor ``(K, features)``."""
    rows = check_inputs(background, f"{owner} (background)")
    if rows.dim() != 2 or rows.shape[1] != features:
        raise ShapeError(
            f"The background of {owner} must be rows of shape (K, {features}), with the "
            f"explained rows' columns. Got {tuple(rows.shape)} instead."
        )
    return rows


def explain_with_background(
    method: Method,
    model: Model,
    inputs: Tensor,
    target: TargetLike,
    background: Tensor,
    *,
    mode: Mode = "expectation",
) -> Explanation:
    """Explain rows ``(N, F)`` with ``method``, removed columns taken from ``background``.

    Parameters
    ----------
    method : Method
        A method with a ``fill``, ``baseline_tensor`` or ``background`` field; that field is
        replaced (``gradient_shap`` takes the background as it is, in either mode).
    model : Model
    inputs : Tensor
        Rows ``(N, F)``.
    target : None, int, sequence or tensor of ints, or callable
    background : Tensor
        Rows ``(K, F)``.
    mode : {"expectation", "mean"}, default="expectation"
        See the module docstring.

    Returns
    -------
    Explanation
        Attributions ``(N, F)``; its config holds the background in the replaced field (a
        fill named ``background_mean`` or ``background_expectation(K)``, or the baseline
        tensor), and ``background_mode`` for the expectation.

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    """
    check_choice(mode, "background_mode", "explain_with_background", MODES)
    rows = check_inputs(inputs, "explain_with_background")
    background = check_background(background, rows.shape[1], "explain_with_background")
    field = baseline_field(method)
    if field == "background":
        return replace(method, **{field: background}).explain(model, rows, target)
    n, count = rows.shape[0], background.shape[0]
    if mode == "mean":
        mean = background.mean(0, keepdim=True)
        value: Any = mean if field == "baseline_tensor" else BackgroundFill(mean, "background_mean")
        return replace(method, **{field: value}).explain(model, rows, target)
    tiled: Any = background.repeat(n, 1)
    if field == "fill":
        tiled = BackgroundFill(background, f"background_expectation({count})")
    with model.ledger.track() as tracker:
        resolved = model.target(rows.to(model.device or rows.device), target)
        classes = None if resolved.classes is None else resolved.classes.to(rows.device)
        per_pair = target if classes is None else classes.repeat_interleave(count)
        with _quiet_constant_maps():  # a row equal to a background row has a zero map
            inner = replace(method, **{field: tiled}).explain(
                model, rows.repeat_interleave(count, 0), per_pair
            )
    attributions = inner.attributions.view(n, count, *inner.attributions.shape[1:]).mean(1)
    return Explanation(
        attributions=attributions,
        method=inner.method,
        config={**inner.config, "background_mode": mode},
        target=classes,
        cost=tracker.cost,
    )
