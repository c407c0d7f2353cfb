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


_BUDGET_KEYS = ("n_masks", "n_samples", "n_design", "iterations", "steps")
_FIXED_PASSES = {"occlusion": 200.0, "score_cam": 64.0, "ablation_cam": 64.0}
"""Methods whose passes no parameter states: a guess at the built-in 64 x 64 images."""


def expected_passes(method: str, params: dict[str, Any]) -> float:
    """A rough guess of a method's model passes per image, for scheduling only.

    The largest of its sample or step counts (``n_masks``, ``n_samples``, ...); a subset
    selection search on ``R`` regions (it has a ``search``): ``R**2``; regions alone: ``R``;
    else a fixed guess for sliding windows and per-channel CAMs, and 2 (one forward and one
    backward pass) for the rest. A wrong guess costs wall time, never a different result.
    """
    from faithmap.api import get_method

    config = dict(get_method(method, **params).config())
    budget = [
        float(v)
        for k in _BUDGET_KEYS
        if isinstance(v := config.get(k), int | float) and not isinstance(v, bool)
    ]
    regions = config.get("regions")
    count = None
    if isinstance(regions, str) and regions.rpartition(":")[2].isdigit():
        count = float(regions.rpartition(":")[2])
    if "search" in config and count is not None:
        budget.append(count**2)
    elif count is not None:
        budget.append(count)
    return max(budget, default=_FIXED_PASSES.get(method, 2.0))


def longest_first(tasks: list[Task]) -> list[Task]:
    """The tasks with the most expected passes per image first (stable otherwise): workers
    taking tasks in this order finish nearly together, instead of one waiting on another's
    long last task (the plan's order puts the last model's perturbation methods last)."""
    guesses: dict[str, float] = {}
    for task in tasks:
        if task.method not in guesses:
            guesses[task.method] = expected_passes(task.method, task.params)
    return sorted(tasks, key=lambda task: -guesses[task.method] * task.size)
