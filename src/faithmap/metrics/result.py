"""The one result type every metric returns: a value per sample, and how it was obtained."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from faithmap.cost import Cost


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """A metric's value for each sample, with every choice that changes it.

    Attributes
    ----------
    metric : str
        The metric's registered name.
    values : Tensor
        ``(N,)`` one value per sample, on the inputs' device (NaN where undefined, e.g. a
        localisation metric on a sample with an empty mask).
    higher_is_better : bool
        Whether a larger value means a better explanation.
    choices : dict
        Every choice that changes the number: target rule, softmax or logits, fill, unit, steps,
        seed, ...
    cost : Cost
        Model passes and seconds the metric spent (zero passes for metrics of the map alone).
    target : Tensor or None
        The class scored for each sample, ``None`` when the metric reads no class or the
        target is a callable.
    """

    metric: str
    values: Tensor
    higher_is_better: bool
    choices: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    target: Tensor | None = None

    @property
    def mean(self) -> float:
        """Mean over the samples, ignoring NaN (samples where the metric is undefined)."""
        return float(self.values.double().nanmean())
