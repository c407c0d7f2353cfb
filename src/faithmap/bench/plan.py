"""A benchmark split into tasks: model × method × chunk of samples, with deterministic ids.

A task is the unit the store records as done and an executor hands to a worker: it explains one
chunk of samples with one method on one model, then scores that explanation with every metric.
Its id, ``"<model>/<method>/<start>-<stop>"``, depends only on the configuration, so a resumed
run recognises the tasks it has already stored.

References
----------
Covert, Lundberg, Lee, "Explaining by Removing: A Unified Framework for Model Explanation",
JMLR 2021 (every method and metric here is a removal-based explanation scored by removal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faithmap.bench.config import BenchConfig


@dataclass(frozen=True)
class Task:
    """One unit of work: explain samples ``start:stop`` with ``method`` on ``model``, then score.

    Attributes
    ----------
    model, method : str
    params : dict
        The method's parameters (the configuration's, plus the seed).
    start, stop : int
        The samples of the task, ``range(start, stop)`` of the data set.
    """

    model: str
    method: str
    params: dict[str, Any]
    start: int = 0
    stop: int = 0

    @property
    def id(self) -> str:
        """``"<model>/<method>/<start>-<stop>"``: unique within a run, stable across runs."""
        return f"{self.model}/{self.method}/{self.start}-{self.stop}"

    @property
    def size(self) -> int:
        """Number of samples."""
        return self.stop - self.start


def plan(config: BenchConfig) -> list[Task]:
    """The tasks of a benchmark, model-major, then method, then chunk of samples.

    Examples
    --------
    >>> config = BenchConfig(models=["cnn"], methods=["saliency"], n_samples=5, chunk_size=2)
    >>> [task.id for task in plan(config)]
    ['cnn/saliency/0-2', 'cnn/saliency/2-4', 'cnn/saliency/4-5']
    """
    return [
        Task(model, method, config.params(method), start, min(start + config.chunk_size, stop))
        for model in config.models
        for method in config.methods
        for start, stop in (
            (s, config.n_samples) for s in range(0, config.n_samples, config.chunk_size)
        )
    ]
