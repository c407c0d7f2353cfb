"""What a worker does with one task: explain a chunk of samples, score it, return the rows.

:func:`run_task` is a plain function of picklable values (:class:`Job`, :class:`Task`), so the
local executor calls it in process and the Ray executor ships it to remote workers unchanged.
Each process loads a model and makes the data once, then reuses them across tasks. Nothing is
written here: the results go back to the driver, which owns the store.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018 (insertion and deletion curves, whose per-sample curves are returned for the report).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from torch import Tensor

from faithmap.api import get_method
from faithmap.bench.config import BenchConfig
from faithmap.bench.plan import Task
from faithmap.bench.sources import DataSource, ImageData, ModelSource
from faithmap.core.cost import Cost
from faithmap.core.detection import box_targets
from faithmap.core.memory_format import check_memory_format
from faithmap.core.model import Model
from faithmap.core.precision import check_precision
from faithmap.errors import ModelError
from faithmap.metrics import METRICS


@dataclass(frozen=True)
class Job:
    """What every task of a run shares, as plain picklable values."""

    data: DataSource
    n_samples: int
    data_seed: int
    metrics: tuple[str, ...]
    metric_params: dict[str, dict[str, Any]]
    batch_size: int | None
    models: dict[str, ModelSource]
    device: str = "cpu"
    precision: str = "fp32"
    memory_format: str = "contiguous"

    @staticmethod
    def of(config: BenchConfig) -> Job:
        """The job of a configuration."""
        return Job(
            data=config.data,
            n_samples=config.n_samples,
            data_seed=config.data_seed,
            metrics=tuple(config.metrics),
            metric_params={m: config.metric_kwargs(m) for m in config.metrics},
            batch_size=config.batch_size,
            models={name: config.model_source(name) for name in config.models},
            device=config.device,
            precision=config.precision,
            memory_format=config.memory_format,
        )


@dataclass(frozen=True)
class Row:
    """One measurement: a metric of one sample's explanation by one method on one model.

    Costs are per image: the explanation's cost (the task's, divided by its number of samples;
    its seconds exclude the model's one-time batch-size calibration) and the metric's.
    """

    model: str
    method: str
    metric: str
    sample: int
    value: float
    target: int
    explain_forward: float
    explain_backward: float
    explain_seconds: float
    metric_forward: float
    metric_backward: float
    metric_seconds: float
    params: str
    """The method's full configuration, as JSON."""
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskResult:
    """What a task returns to the driver.

    Attributes
    ----------
    task : Task
    rows : list of Row
        One per (sample, metric), sample-major.
    maps : Tensor
        ``(n, H, W)`` float32 attribution maps of the task's samples (channels summed).
    curves : dict
        Per metric that has a curve: fractions ``(K,)`` and per-sample curves ``(n, K)``.
    cost : Cost
        The explanation's and the metrics' cost together.
    skipped : str or None
        Why the method does not apply to the model (its :class:`~faithmap.errors.ModelError`,
        e.g. LRP on a layer it has no rule for); the task then has no rows.
    """

    task: Task
    rows: list[Row]
    maps: Tensor
    curves: dict[str, tuple[Tensor, Tensor]]
    cost: Cost
    skipped: str | None = None


@lru_cache(maxsize=4)
def load_data(data: DataSource, n_samples: int, data_seed: int) -> ImageData:
    """The run's samples (one data set per process, reused by every task)."""
    return data.load(n_samples, data_seed)


@lru_cache(maxsize=8)
def load_model(
    source: ModelSource,
    batch_size: int | None,
    device: str = "cpu",
    precision: str = "fp32",
    memory_format: str = "contiguous",
) -> Model:
    """A model, loaded and wrapped once per process, on ``device`` in ``precision`` and
    ``memory_format``, and reused by every task (a model given in Python is changed only by a
    device, precision or memory format other than the defaults)."""
    model = source.load(batch_size)
    loaded = source.model is None
    fmt = check_memory_format(memory_format)
    return model.to(
        device if loaded or device != "cpu" else None,
        precision=check_precision(precision) if loaded or precision != "fp32" else None,
        memory_format=fmt if loaded or fmt != "contiguous" else None,
    )


def run_task(job: Job, task: Task) -> TaskResult:
    """Explain the task's samples with its method on its model, then score every metric.

    A method that does not apply to the model (it raises :class:`ModelError`) gives a result
    with no rows that says why, so one such pair does not stop a benchmark.
    """
    data = load_data(job.data, job.n_samples, job.data_seed)
    inputs = data.images[task.start : task.stop]
    masks = None if data.masks is None else data.masks[task.start : task.stop]
    model = load_model(
        job.models[task.model], job.batch_size, job.device, job.precision, job.memory_format
    )
    boxes = data.boxes  # detection data: each image's object, a box target
    target = None
    if boxes is not None and data.labels is not None:
        target = box_targets(boxes[task.start : task.stop], data.labels[task.start : task.stop])
    try:
        explanation = get_method(task.method, **task.params).explain(model, inputs, target)
    except ModelError as err:
        return TaskResult(task, [], inputs.new_empty(0), {}, Cost(), skipped=str(err))
    n, spent = len(explanation), explanation.cost
    targets = explanation.target.tolist() if explanation.target is not None else [-1] * n
    params = json.dumps(dict(explanation.config), default=repr, sort_keys=True)
    rows: list[Row] = []
    curves: dict[str, tuple[Tensor, Tensor]] = {}
    for metric in job.metrics:
        result = METRICS[metric].run(
            model, inputs, explanation, masks=masks, **job.metric_params[metric]
        )
        spent += result.cost
        curve, fractions = getattr(result, "curve", None), getattr(result, "fractions", None)
        if isinstance(curve, Tensor) and isinstance(fractions, Tensor):
            curves[metric] = (fractions.float().cpu(), curve.float().cpu())
        values = result.values.double().cpu().tolist()
        rows += [
            Row(
                model=task.model,
                method=task.method,
                metric=metric,
                sample=task.start + i,
                value=float(values[i]),
                target=int(targets[i]),
                explain_forward=explanation.cost.forward / n,
                explain_backward=explanation.cost.backward / n,
                explain_seconds=explanation.cost.seconds / n,
                metric_forward=result.cost.forward / n,
                metric_backward=result.cost.backward / n,
                metric_seconds=result.cost.seconds / n,
                params=params,
                higher_is_better=result.higher_is_better,
            )
            for i in range(n)
        ]
    attributions = explanation.attributions.detach().float().cpu()
    maps = attributions.sum(1) if attributions.dim() == 4 else attributions
    rows.sort(key=lambda row: row.sample)  # sample-major, metrics in the configured order
    return TaskResult(task, rows, maps.contiguous(), curves, spent)
