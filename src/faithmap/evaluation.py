"""``faithmap.evaluate``: several explanations × several metrics → one tidy table."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from faithmap.core.explanation import Explanation, attribution_map
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import METRICS
from faithmap.core.validation import check_inputs
from faithmap.errors import InvalidParameterError, MissingDependencyError, ShapeError
from faithmap.metrics import DEFAULT_METRICS

if TYPE_CHECKING:
    import pandas

    from faithmap.generation.explanation import GenerationExplanation

COLUMNS = (
    "sample",
    "method",
    "metric",
    "value",
    "higher_is_better",
    "target",
    "passes",
    "seconds",
    "choices",
)
"""The columns of the table :func:`evaluate` returns, in order."""


def _pandas() -> Any:
    try:
        return importlib.import_module("pandas")
    except ImportError as err:
        raise MissingDependencyError(
            "faithmap.evaluate returns a pandas DataFrame, but pandas is not installed. Install "
            "it with `pip install pandas`, or call the metrics in faithmap.metrics directly."
        ) from err


def _generation_explanations(explanations: Any) -> dict[str, Any] | None:
    """Label -> GenerationExplanation when ``explanations`` explain a language model's generated
    steps; ``None`` when none does (checked by type name: ``faithmap.generation`` is imported
    only when needed)."""

    def is_generation(explanation: object) -> bool:
        return type(explanation).__name__ == "GenerationExplanation"

    if is_generation(explanations):
        return {str(explanations.method): explanations}
    if not isinstance(explanations, Mapping):
        return None
    kinds = {str(label): is_generation(e) for label, e in explanations.items()}
    if not any(kinds.values()):
        return None
    if not all(kinds.values()):
        raise InvalidParameterError(
            "The explanations mix GenerationExplanations "
            f"({[label for label, kind in kinds.items() if kind]}) with explanations of input "
            f"batches ({[label for label, kind in kinds.items() if not kind]}). Evaluate each "
            "kind in its own call."
        )
    return {str(label): e for label, e in explanations.items()}


def _evaluate_generation(
    model: Any,
    prompt: object,
    explanations: dict[str, Any],
    metrics: Sequence[str] | None,
    masks: Tensor | None,
    params: Mapping[str, Mapping[str, Any]] | None,
    dependencies: Sequence[Sequence[int]] | None,
) -> pandas.DataFrame:
    """:func:`evaluate` on generation explanations: checks that they explain ``prompt`` (its
    text, or its token ids) and scores them with
    :func:`faithmap.generation.evaluate_generation`, one row per generated step and metric."""
    from faithmap.generation.evaluation import evaluate_generation

    if masks is not None:
        raise InvalidParameterError(
            "masks were given, but generation explanations are scored per generated step, "
            "against the prompt positions each answer depends on: pass dependencies=[[...], ...] "
            "(for the metric 'hit_rate') instead of masks."
        )
    for label, explanation in explanations.items():
        given = explanation.continuation.prompt
        if isinstance(prompt, str):
            same = given.text == prompt
        else:
            try:
                ids = torch.as_tensor(prompt)
            except (TypeError, ValueError, RuntimeError):
                ids = None
            same = ids is not None and torch.equal(ids.cpu().long(), given.ids.cpu().long())
        if not same:
            shown = given.text if given.text is not None else given.ids.tolist()
            raise InvalidParameterError(
                f"The explanation {label!r} explains the prompt {shown!r}, but the inputs given "
                f"are {prompt!r}. Pass the prompt that was explained (its text, or its token ids)."
            )
    options: dict[str, Any] = {"dependencies": dependencies, "params": params}
    if metrics is not None:
        options["metrics"] = metrics
    table: pandas.DataFrame = evaluate_generation(model, explanations, **options)
    return table


def _labelled(explanations: object) -> dict[str, Explanation | Tensor]:
    if isinstance(explanations, Explanation):
        return {explanations.method: explanations}
    if isinstance(explanations, Tensor):
        return {"explanation": explanations}
    if not isinstance(explanations, Mapping) or not explanations:
        raise InvalidParameterError(
            "The 'explanations' parameter of evaluate must be a non-empty mapping of label to "
            "Explanation (e.g. {'ig': exp}), or a single Explanation. Got "
            f"{type(explanations).__name__} instead."
        )
    return {str(label): explanation for label, explanation in explanations.items()}


def _checked_params(
    names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    given = dict(params or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidParameterError(
            f"The 'params' parameter of evaluate names metrics that are not evaluated: {unknown}. "
            f"Its keys must be among the metrics {list(names)}."
        )
    for name, value in given.items():
        if not isinstance(value, Mapping):
            raise InvalidParameterError(
                f"The 'params' entry for {name!r} must be a mapping of parameter to value, e.g. "
                f"{{'steps': 10}}. Got {type(value).__name__} instead."
            )
    return {name: dict(given.get(name, {})) for name in names}


def _choices_json(choices: Mapping[str, Any]) -> str:
    return json.dumps(dict(choices), sort_keys=True, default=repr)


def evaluate(
    model: ModelLike | None,
    inputs: Tensor | str,
    explanations: Mapping[str, Explanation | Tensor]
    | Mapping[str, GenerationExplanation]
    | Explanation
    | Tensor
    | GenerationExplanation,
    *,
    metrics: Sequence[str] | None = None,
    masks: Tensor | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    dependencies: Sequence[Sequence[int]] | None = None,
) -> pandas.DataFrame:
    """Score each explanation with each metric: one row per sample × method × metric.

    Parameters
    ----------
    model : Model, nn.Module, callable or None
        The model explained (wrapped once, so all metrics share its batch size and ledger);
        ``None`` when every metric reads only the maps (localisation, complexity).
    inputs : Tensor or str
        The explained batch ``(N, ...)``; for generation explanations, the prompt explained
        (its text, or its token ids).
    explanations : mapping of str to Explanation (or Tensor), or one Explanation
        Label → explanation of ``inputs``; a single Explanation is labelled by its method.
        GenerationExplanations (``faithmap.generation.explain_generation``) are scored per
        generated step by :func:`faithmap.generation.evaluate_generation`, whose table this
        returns (one row per step, method and metric).
    metrics : sequence of str, optional
        Registered metric names (see ``faithmap.metrics.METRICS``); by default
        ``faithmap.metrics.DEFAULT_METRICS``, or for generation explanations every generation
        metric but ``hit_rate`` (``faithmap.generation.evaluation.GENERATION_METRICS``).
    masks : Tensor, optional
        ``(N, 1, H, W)`` boolean ground-truth masks, needed by the localisation metrics.
    params : mapping of str to mapping, optional
        Parameters per metric, e.g. ``{"insertion": {"steps": 10}}``.
    dependencies : sequence of sequence of int, optional
        Generation only: per generated step, the prompt positions its answer depends on (for
        the metric ``hit_rate``).

    Returns
    -------
    pandas.DataFrame
        Columns ``sample, method, metric, value, higher_is_better, target, passes, seconds,
        choices``: ``value`` is NaN where the metric is undefined (an empty mask), ``target``
        the class the metric scored (None if it reads none), ``passes`` and ``seconds`` the
        metric's model passes and seconds for the batch divided by ``N`` (the model's one-time
        batch-size measurement left out), ``choices`` every
        number-changing choice as a JSON string.

    Raises
    ------
    MissingDependencyError
        If pandas is missing.
    InvalidParameterError
        If a metric is unknown, a metric needs ``masks`` and none were given, or a metric runs
        the model and ``model`` is None.
    ShapeError
        If an explanation does not have one map per sample.

    All checks run before any metric does.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x = torch.rand(2, 1, 4, 4)
    >>> table = evaluate(net, x, {"random": torch.rand(2, 1, 4, 4)}, metrics=["sparseness"])
    >>> table.shape
    (2, 9)
    >>> table["metric"].tolist(), table["passes"].tolist()
    (['sparseness', 'sparseness'], [0.0, 0.0])
    """
    pd = _pandas()
    generation = _generation_explanations(explanations)
    if generation is not None:
        return _evaluate_generation(model, inputs, generation, metrics, masks, params, dependencies)
    if dependencies is not None:
        raise InvalidParameterError(
            "dependencies are the prompt positions each generated step depends on, for "
            "explanations of a language model's generation; these explanations are of input "
            "batches. Drop dependencies (pass masks= for localisation)."
        )
    if not isinstance(inputs, Tensor):
        raise InvalidParameterError(
            f"The 'inputs' parameter of evaluate must be the explained batch as a Tensor (a "
            f"prompt only with generation explanations). Got {type(inputs).__name__} instead."
        )
    if metrics is None:
        metrics = DEFAULT_METRICS
    if isinstance(metrics, str) or not isinstance(metrics, Sequence) or not metrics:
        raise InvalidParameterError(
            "The 'metrics' parameter of evaluate must be a non-empty list of metric names, e.g. "
            f"['insertion', 'deletion']. Got {metrics!r} instead."
        )
    names = list(dict.fromkeys(metrics))
    specs = [METRICS[name] for name in names]
    needing = [spec.name for spec in specs if spec.needs_masks]
    if needing and masks is None:
        raise InvalidParameterError(
            f"The metrics {needing} score explanations against ground-truth masks, but no masks "
            "were given. Pass masks=(N, 1, H, W) boolean object masks, or drop these metrics."
        )
    labelled = _labelled(explanations)
    n = int(check_inputs(inputs, "evaluate").shape[0])
    for label, explanation in labelled.items():
        if attribution_map(explanation).shape[0] != n:
            raise ShapeError(
                f"The explanation {label!r} has {attribution_map(explanation).shape[0]} maps but "
                f"the inputs have {n} samples. Pass the explanations of these inputs."
            )
    settings = _checked_params(names, params)
    running = [spec.name for spec in specs if spec.needs_model]
    wrapped = model
    if running:
        if model is None:
            raise InvalidParameterError(
                f"The metrics {running} run the model, but model is None. Pass the model that "
                "was explained, or keep only metrics that read the maps alone."
            )
        wrapped = Model.wrap(model)
    rows: list[dict[str, Any]] = []
    for label, explanation in labelled.items():
        for name in names:
            started = time.perf_counter()
            result = METRICS[name].run(wrapped, inputs, explanation, masks=masks, **settings[name])
            wall = time.perf_counter() - started
            # A metric that runs the model times itself, leaving out the batch-size measurement.
            seconds = result.cost.seconds if result.cost.seconds > 0 else wall
            values = result.values.detach().double().cpu().tolist()
            targets = None if result.target is None else result.target.cpu().tolist()
            choices = _choices_json(result.choices)
            for sample, value in enumerate(values):
                rows.append(
                    {
                        "sample": sample,
                        "method": label,
                        "metric": name,
                        "value": value,
                        "higher_is_better": result.higher_is_better,
                        "target": None if targets is None else int(targets[sample]),
                        "passes": result.cost.passes / n,
                        "seconds": seconds / n,
                        "choices": choices,
                    }
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))
