"""Metrics by name: what the benchmark, :func:`faithmap.evaluate` and the command line call.

A metric function registers itself with ``@register_metric("name")``. Its leading parameters,
before the keyword-only ones, are named from ``model``, ``inputs``, ``explanation`` and
``masks``; :func:`call_metric` passes each what it asks for, so a metric of the map alone is
written ``sparseness(explanation, *, ...)`` and a localisation metric
``pointing_game(explanation, masks, *, ...)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar

from torch import Tensor

from faithmap.errors import InvalidParameterError
from faithmap.metrics.result import MetricResult

F = TypeVar("F", bound=Callable[..., MetricResult])

ARGUMENTS = ("model", "inputs", "explanation", "masks")
"""The names a metric's leading parameters may take."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its function and the arguments it reads."""

    name: str
    function: Callable[..., MetricResult]
    arguments: tuple[str, ...]

    @property
    def needs_masks(self) -> bool:
        """Whether the metric scores against ground-truth masks."""
        return "masks" in self.arguments

    @property
    def needs_model(self) -> bool:
        """Whether the metric runs the model."""
        return "model" in self.arguments

    def describe(self) -> str:
        """The first line of the metric's docstring."""
        doc = (self.function.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


_METRICS: dict[str, MetricSpec] = {}

METRICS: Mapping[str, MetricSpec] = MappingProxyType(_METRICS)
"""Every registered metric by name (read-only)."""


def register_metric(name: str) -> Callable[[F], F]:
    """Function decorator adding a metric to :data:`METRICS` under ``name``."""

    def decorate(function: F) -> F:
        leading = [
            parameter.name
            for parameter in inspect.signature(function).parameters.values()
            if parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        ]
        unknown = [argument for argument in leading if argument not in ARGUMENTS]
        if not leading or unknown:
            raise TypeError(
                f"Metric {name!r} must take leading parameters named from {ARGUMENTS}, then "
                f"keyword-only ones. Got {leading}."
            )
        if name in _METRICS and _METRICS[name].function is not function:
            raise InvalidParameterError(
                f"The metric name {name!r} is already registered. Choose another name."
            )
        _METRICS[name] = MetricSpec(name, function, tuple(leading))
        return function

    return decorate


def metric_spec(name: str) -> MetricSpec:
    """The metric registered under ``name``; a clear error listing valid names otherwise."""
    if name not in _METRICS:
        raise InvalidParameterError(
            f"Unknown metric {name!r}. Valid names are: {', '.join(sorted(_METRICS))}."
        )
    return _METRICS[name]


def call_metric(
    name: str,
    model: Any,
    inputs: Tensor,
    explanation: Any,
    *,
    masks: Tensor | None = None,
    **params: Any,
) -> MetricResult:
    """Run the metric ``name``, giving it the arguments it reads and ``params``.

    Raises
    ------
    InvalidParameterError
        If the metric is unknown, or needs ground-truth ``masks`` and none were given.
    """
    spec = metric_spec(name)
    if spec.needs_masks and masks is None:
        raise InvalidParameterError(
            f"The metric {name!r} scores explanations against ground-truth masks, but no masks "
            "were given. Pass masks=(N, 1, H, W) boolean object masks, or drop this metric."
        )
    available = {"model": model, "inputs": inputs, "explanation": explanation, "masks": masks}
    return spec.function(*(available[argument] for argument in spec.arguments), **params)
