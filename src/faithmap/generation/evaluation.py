"""``evaluate_generation``: generation explanations × generation metrics → one tidy table.

The generation counterpart of :func:`faithmap.evaluate` (which scores image, text and tabular
explanations of ``inputs`` and refuses a :class:`GenerationExplanation`). Every metric gives one
value per generated step:

- ``comprehensiveness`` / ``sufficiency``: ERASER's, over the top 1, 5, 10, 20, 50 % of
  features (DeYoung et al. 2020);
- ``soft_comprehensiveness`` / ``soft_sufficiency``: their soft versions (Zhao and Aletras 2023);
- ``step_insertion`` / ``step_deletion``: the area under the token-level insertion or deletion
  curve of the step's log-probability (Petsiuk et al. 2018, per generated token);
- ``hit_rate``: 1 when the step's top feature holds a prompt position the answer is known to
  depend on, else 0 (needs ``dependencies``; the synthetic tasks of
  :mod:`faithmap.generation.tasks` carry them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.generation.explain import LanguageModelLike
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.faithfulness import (
    StepMetric,
    comprehensiveness,
    soft_comprehensiveness,
    soft_sufficiency,
    sufficiency,
)
from faithmap.generation.hit_rates import top_feature_hits
from faithmap.generation.step_curves import step_curves

GENERATION_METRICS = (
    "comprehensiveness",
    "sufficiency",
    "soft_comprehensiveness",
    "soft_sufficiency",
    "step_insertion",
    "step_deletion",
    "hit_rate",
)
"""Every metric :func:`evaluate_generation` knows, in the order it reports them."""

COLUMNS = ("step", "token", "method", "metric", "value", "higher_is_better", "passes", "seconds")
"""The columns of the table :func:`evaluate_generation` returns, in order."""


@dataclass(frozen=True)
class StepScore:
    """One metric of one explanation at every generated step.

    Attributes
    ----------
    values : Tensor
        ``(S,)`` float64, ``nan`` where undefined.
    higher_is_better : bool
    cost : Cost
    curve : tuple of Tensor or None
        For the curve metrics: fractions ``(K,)`` and each step's curve ``(S, K)``.
    """

    values: Tensor
    higher_is_better: bool
    cost: Cost = field(default_factory=Cost)
    curve: tuple[Tensor, Tensor] | None = None


_SCORED: dict[str, Callable[..., StepMetric]] = {
    "comprehensiveness": comprehensiveness,
    "sufficiency": sufficiency,
    "soft_comprehensiveness": soft_comprehensiveness,
    "soft_sufficiency": soft_sufficiency,
}


def check_generation_metrics(metrics: Sequence[str], *, dependencies: bool) -> list[str]:
    """``metrics`` as a list of known names; ``hit_rate`` only when ``dependencies`` are given."""
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
        raise InvalidParameterError(
            "The 'metrics' parameter of evaluate_generation must be a non-empty list of metric "
            f"names among {list(GENERATION_METRICS)}. Got {metrics!r} instead."
        )
    unknown = [name for name in metrics if name not in GENERATION_METRICS]
    if unknown:
        raise InvalidParameterError(
            f"Unknown generation metric(s) {unknown}. Valid names are: "
            f"{', '.join(GENERATION_METRICS)}."
        )
    if "hit_rate" in metrics and not dependencies:
        raise InvalidParameterError(
            "The metric 'hit_rate' scores each step's top feature against the prompt positions "
            "the answer depends on, but no dependencies were given. Pass dependencies=[positions "
            "of step 0, ...] (make_task(...).dependencies[i]), or drop 'hit_rate'."
        )
    return list(dict.fromkeys(metrics))


def score_generation(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    metric: str,
    *,
    dependencies: Sequence[Sequence[int]] | None = None,
    **params: Any,
) -> StepScore:
    """One metric of one explanation at every generated step (see the module's list); its
    cost holds the metric's passes and its wall time."""
    check_generation_metrics([metric], dependencies=dependencies is not None)
    started = time.perf_counter()
    curve = None
    if metric == "hit_rate":
        if params:
            raise InvalidParameterError(f"hit_rate takes no parameters. Got {sorted(params)}.")
        values, higher, cost = top_feature_hits(explanation, dependencies or []), True, Cost()
    elif metric in ("step_insertion", "step_deletion"):
        curves = step_curves(model, explanation, kind=metric.removeprefix("step_"), **params)
        values, higher, cost = curves.auc, curves.higher_is_better, curves.cost
        curve = (curves.fractions.float().cpu(), curves.curves.float().cpu())
    else:
        result = _SCORED[metric](model, explanation, **params)
        values, higher, cost = result.values, result.higher_is_better, result.cost
    timed = Cost(cost.forward, cost.backward, time.perf_counter() - started)
    return StepScore(values.double().cpu(), higher, timed, curve)


def _labelled(
    explanations: Mapping[str, GenerationExplanation] | GenerationExplanation,
) -> dict[str, GenerationExplanation]:
    if isinstance(explanations, GenerationExplanation):
        return {explanations.method: explanations}
    if not isinstance(explanations, Mapping) or not explanations:
        raise InvalidParameterError(
            "The 'explanations' parameter of evaluate_generation must be a GenerationExplanation "
            "or a non-empty mapping of label to GenerationExplanation. Got "
            f"{type(explanations).__name__} instead."
        )
    for label, explanation in explanations.items():
        if not isinstance(explanation, GenerationExplanation):
            raise InvalidParameterError(
                f"The explanation {label!r} is a {type(explanation).__name__}, not a "
                "GenerationExplanation (from faithmap.generation.explain_generation); evaluate "
                "image, text and tabular explanations with faithmap.evaluate."
            )
    return {str(label): explanation for label, explanation in explanations.items()}


def evaluate_generation(
    model: LanguageModelLike,
    explanations: Mapping[str, GenerationExplanation] | GenerationExplanation,
    *,
    metrics: Sequence[str] = GENERATION_METRICS[:-1],
    dependencies: Sequence[Sequence[int]] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """Score generation explanations with generation metrics, one row per step and metric.

    Parameters
    ----------
    model : the language model that was explained (as given to ``explain_generation``)
    explanations : GenerationExplanation or mapping of label to GenerationExplanation
        All of the same prompt and continuation when ``dependencies`` are given.
    metrics : sequence of str, default every metric but ``hit_rate``
        Names from :data:`GENERATION_METRICS`.
    dependencies : sequence of sequence of int, optional
        Per generated step, the prompt positions its answer depends on (for ``hit_rate``).
    params : mapping, optional
        Parameters per metric, e.g. ``{"soft_sufficiency": {"samples": 16}}``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: the step, its token, the label, the metric, the value, whether
        higher is better, and the metric's passes and seconds per step.

    References
    ----------
    DeYoung et al., "ERASER", ACL 2020; Zhao and Aletras, "Incorporating Attribution Importance
    for Improving Faithfulness Metrics", ACL 2023; Petsiuk et al., "RISE", BMVC 2018.
    """
    import pandas

    labelled = _labelled(explanations)
    names = check_generation_metrics(metrics, dependencies=dependencies is not None)
    settings = {name: dict(value) for name, value in (params or {}).items()}
    stray = sorted(set(settings) - set(names))
    if stray:
        raise InvalidParameterError(
            f"The 'params' parameter of evaluate_generation names metrics that are not "
            f"evaluated: {stray}. Its keys must be among {names}."
        )
    rows: list[dict[str, Any]] = []
    for label, explanation in labelled.items():
        steps = explanation.continuation.steps
        if dependencies is not None and len(dependencies) != steps:
            raise ShapeError(
                f"The explanation {label!r} has {steps} steps but dependencies lists "
                f"{len(dependencies)}. Give the prompt positions of each step."
            )
        for name in names:
            score = score_generation(
                model, explanation, name, dependencies=dependencies, **settings.get(name, {})
            )
            for step, value in enumerate(score.values.tolist()):
                rows.append(
                    {
                        "step": step,
                        "token": explanation.step_tokens[step],
                        "method": label,
                        "metric": name,
                        "value": value,
                        "higher_is_better": score.higher_is_better,
                        "passes": score.cost.passes / steps,
                        "seconds": score.cost.seconds / steps,
                    }
                )
    return pandas.DataFrame(rows, columns=list(COLUMNS))


def mean_curve(curve: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Fractions ``(K,)`` and the mean over steps ``(K,)`` of per-step curves ``(S, K)``."""
    fractions, per_step = curve
    return fractions, torch.nanmean(per_step, dim=0)
