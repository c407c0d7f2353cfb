"""The ``generation`` suite: generation attribution methods on the built-in GPT's synthetic tasks.

``faithmap bench --suite generation`` explains ``n_samples`` seeded examples of each synthetic
task (key-value retrieval, copying, counting; :mod:`faithmap.generation.tasks`) with every
method, teacher-forcing the correct answer, the prompt's content tokens as features and the
``[MASK]`` token as removal (the built-in GPT learnt it as "no word"), and scores each
explanation with the generation metrics of :func:`~faithmap.generation.evaluate_generation`:
ERASER comprehensiveness and sufficiency, their soft versions, the area under each step's
insertion and deletion curve, and the hit rate against the dependencies the task knows. A row's
value is the metric's mean over the example's generated steps.

It uses the benchmark's store: a task is one synthetic task (the row's ``model``,
``gpt:<task>``), one method and a chunk of examples, written in one transaction with its
attribution matrices and mean curves, so an interrupted run resumes where it stopped. A run is
named by the hash of :meth:`GenerationBenchConfig.identity`, which includes the shipped
weights' digest (retrained weights start a new run). The attention methods are left out: they
read Hugging Face attention outputs, which the built-in GPT does not return.

References
----------
DeYoung et al., "ERASER", ACL 2020; Zhao and Aletras, ACL 2023 (soft metrics); Zhao and Shan,
"ReAGent", 2024; Arras, Osman, Samek, "CLEVR-XAI", Information Fusion 81, 2022 (hit rates
against known dependencies).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from faithmap.bench.executors import with_progress
from faithmap.bench.export import write_results
from faithmap.bench.generation_report import write_generation_report
from faithmap.bench.plan import Task
from faithmap.bench.store import Store
from faithmap.bench.work import Row, TaskResult
from faithmap.core.cost import Cost
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.generation.evaluation import (
    GENERATION_METRICS,
    check_generation_metrics,
    mean_curve,
    score_generation,
)
from faithmap.generation.explain import explain_generation
from faithmap.generation.gpt import TinyGpt, load_gpt, weights_digest
from faithmap.generation.method import GENERATION_METHODS, get_generation_method
from faithmap.generation.tasks import MASK_ID, TASKS, TaskExamples, content_features, make_task

GENERATION_DATA = "generation"
"""The ``data`` of the generation suite: the synthetic tasks, not images."""

FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        "feature_ablation": "perturbation",
        "kernel_shap": "perturbation",
        "lime": "perturbation",
        "integrated_gradients": "gradient",
        "input_x_gradient": "gradient",
        "reagent": "perturbation",
        "resampling": "perturbation",
    }
)
"""The suite's methods (every generation method the built-in GPT supports) and families."""

METHOD_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "kernel_shap": MappingProxyType({"n_samples": 200}),
        "lime": MappingProxyType({"n_samples": 200}),
        "resampling": MappingProxyType({"samples": 16}),
    }
)
"""Cheaper settings than the defaults: at most 7 content features per prompt."""

SUITE_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "name": "generation",
        "reference": (
            "DeYoung et al., ERASER, ACL 2020; Zhao and Aletras, ACL 2023; Zhao and Shan, "
            "ReAGent, 2024 (generation attribution on tasks with known dependencies)"
        ),
        "models": ("gpt",),
        "families": FAMILIES,
        "metrics": GENERATION_METRICS,
        "method_params": METHOD_PARAMS,
        "n_samples": 8,
        "data_seed": 2_000_000,
        "batch_size": 64,
        "data": GENERATION_DATA,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them)."""


@dataclass(frozen=True)
class GenerationBenchConfig:
    """What a generation benchmark runs; every name and parameter is checked when built.

    Attributes
    ----------
    tasks : sequence of str, default all of :data:`~faithmap.generation.tasks.TASKS`
    methods : sequence of str, default the suite's
    metrics : sequence of str, default :data:`~faithmap.generation.GENERATION_METRICS`
    method_params, metric_params : mapping
        Parameters per method and per metric.
    n_samples : int, default=8
        Examples per task, ``make_task(task, n_samples, seed=data_seed)``.
    data_seed : int, default=2_000_000
        No training step of the shipped weights drew it.
    seed : int or None
        Seed of the random methods (those with a ``seed`` parameter); ``None``: theirs.
    chunk_size : int, default=8
        Examples per stored task.
    batch_size : int or None, default=64
        Rows per model call.
    out : Path
        Folder of the store, the results and the report.
    """

    tasks: Sequence[str] = TASKS
    methods: Sequence[str] = tuple(FAMILIES)
    metrics: Sequence[str] = GENERATION_METRICS
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: METHOD_PARAMS)
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_samples: int = 8
    data_seed: int = 2_000_000
    seed: int | None = None
    chunk_size: int = 8
    batch_size: int | None = 64
    out: Path = Path("faithmap-bench")

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "tasks", _known(self.tasks, "tasks", TASKS))
        set_(self, "methods", _known(self.methods, "methods", tuple(GENERATION_METHODS)))
        set_(self, "metrics", tuple(check_generation_metrics(self.metrics, dependencies=True)))
        stray = sorted(set(self.metric_params) - set(self.metrics))
        if stray:
            raise InvalidParameterError(
                f"The metric_params name {stray}, which this benchmark does not score: "
                f"{list(self.metrics)}."
            )
        set_(self, "method_params", {m: dict(self.method_params.get(m, {})) for m in self.methods})
        set_(self, "metric_params", {m: dict(self.metric_params.get(m, {})) for m in self.metrics})
        check_int(self.n_samples, "n_samples", "GenerationBenchConfig", low=1)
        check_int(self.data_seed, "data_seed", "GenerationBenchConfig", low=0)
        check_int(self.chunk_size, "chunk_size", "GenerationBenchConfig", low=1)
        set_(self, "out", Path(self.out))
        for method in self.methods:  # a bad parameter fails before any work
            get_generation_method(method, **self.params(method))

    @property
    def models(self) -> tuple[str, ...]:
        """The rows' ``model`` names: ``gpt:<task>``."""
        return tuple(f"gpt:{task}" for task in self.tasks)

    def params(self, method: str) -> dict[str, Any]:
        """The method's parameters, with the seed for methods that take one."""
        params = dict(self.method_params.get(method, {}))
        takes_seed = "seed" in {f.name for f in fields(GENERATION_METHODS[method])}  # type: ignore[arg-type]
        if self.seed is not None and takes_seed:
            params["seed"] = self.seed
        return params

    def identity(self) -> dict[str, Any]:
        """What decides the numbers: weights, tasks, examples, methods' full configuration,
        metrics' parameters."""
        methods = {m: get_generation_method(m, **self.params(m)).params() for m in self.methods}
        identity: dict[str, Any] = json.loads(
            json.dumps(
                {
                    "data": GENERATION_DATA,
                    "weights": weights_digest(),
                    "tasks": list(self.tasks),
                    "n_samples": self.n_samples,
                    "data_seed": self.data_seed,
                    "methods": methods,
                    "metrics": {m: self.metric_params[m] for m in self.metrics},
                },
                default=repr,
            )
        )
        return identity

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`identity`: the run's name in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """The whole configuration as JSON-ready values."""
        return {
            **self.identity(),
            "chunk_size": self.chunk_size,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "out": str(self.out),
        }


def _known(names: Sequence[str], what: str, valid: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not names:
        raise InvalidParameterError(
            f"The '{what}' of a generation benchmark must be a non-empty list among "
            f"{', '.join(valid)}. Got {names!r} instead."
        )
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise InvalidParameterError(
            f"Unknown {what} {unknown} for the generation suite. Valid names are: "
            f"{', '.join(valid)}."
        )
    return tuple(dict.fromkeys(names))


def plan_generation(config: GenerationBenchConfig) -> list[Task]:
    """The tasks: synthetic task (``gpt:<task>``) × method × chunk of examples."""
    return [
        Task(model, method, config.params(method), start, min(start + config.chunk_size, stop))
        for model in config.models
        for method in config.methods
        for start, stop in (
            (s, config.n_samples) for s in range(0, config.n_samples, config.chunk_size)
        )
    ]


@cache
def _examples(task: str, n: int, seed: int) -> TaskExamples:
    return make_task(task, n, seed=seed)


def run_generation_task(config: GenerationBenchConfig, task: Task, model: TinyGpt) -> TaskResult:
    """Explain the task's examples with its method, score every metric, return the rows.

    A method that refuses the model (:class:`~faithmap.errors.ModelError`) gives a result with
    no rows that says why.
    """
    data = _examples(task.model.removeprefix("gpt:"), config.n_samples, config.data_seed)
    method = get_generation_method(task.method, **task.params)
    rows: list[Row] = []
    maps: list[Tensor] = []
    curves: dict[str, list[tuple[Tensor, Tensor]]] = {}
    spent = Cost()
    for i in range(task.start, task.stop):
        prompt = data.prompts[i]
        try:
            exp = explain_generation(
                model,
                prompt,
                method=method,
                continuation=data.answers[i],
                features=content_features(prompt),
                baseline=MASK_ID,
                batch_size=config.batch_size,
            )
        except ModelError as err:
            return TaskResult(task, [], torch.empty(0), {}, Cost(), skipped=str(err))
        spent += exp.cost
        maps.append(exp.attributions.float())
        params = json.dumps(exp.config, default=repr, sort_keys=True)
        for metric in config.metrics:
            score = score_generation(
                model,
                exp,
                metric,
                dependencies=data.dependencies[i],
                **config.metric_params[metric],
            )
            spent += score.cost
            if score.curve is not None:
                curves.setdefault(metric, []).append(mean_curve(score.curve))
            rows.append(
                Row(
                    model=task.model,
                    method=task.method,
                    metric=metric,
                    sample=i,
                    value=float(score.values.nanmean()),
                    target=int(data.answers[i, 0]),
                    explain_forward=exp.cost.forward,
                    explain_backward=exp.cost.backward,
                    explain_seconds=exp.cost.seconds,
                    metric_forward=score.cost.forward,
                    metric_backward=score.cost.backward,
                    metric_seconds=score.cost.seconds,
                    params=params,
                    higher_is_better=score.higher_is_better,
                )
            )
    stacked = {
        metric: (found[0][0], torch.stack([curve for _, curve in found]))
        for metric, found in curves.items()
    }
    return TaskResult(task, rows, torch.stack(maps), stacked, spent)


def _results(
    config: GenerationBenchConfig, todo: list[Task], model: TinyGpt
) -> Iterator[TaskResult]:
    for task in todo:
        yield run_generation_task(config, task, model)


def run_generation_bench(
    config: GenerationBenchConfig | None = None,
    *,
    progress: bool = True,
    report: bool = True,
    command: str = "",
) -> list[Row]:
    """Run the generation benchmark (resuming a stored run of the same configuration).

    Writes the store (``out/bench.sqlite``), ``results.csv``, ``results.json`` and, with
    ``report``, ``report.html``. Returns the run's rows: task, method, metric, then example.
    """
    config = config or GenerationBenchConfig()
    tasks = plan_generation(config)
    model = load_gpt()
    started = time.perf_counter()
    with Store(config.out) as store:
        run = store.open_run(config, command=command)
        done = store.done(run)
        todo = [task for task in tasks if task.id not in done]
        for result in with_progress(
            _results(config, todo, model),
            total=len(tasks),
            done=len(tasks) - len(todo),
            enabled=progress,
        ):
            store.write(run, result)
        order = {name: i for i, name in enumerate((*config.models, *config.methods))}
        metrics = {name: i for i, name in enumerate(config.metrics)}
        rows = sorted(
            store.rows(run),
            key=lambda r: (order[r.model], order[r.method], metrics[r.metric], r.sample),
        )
        skipped = store.skipped(run)
        extra = {"run": run.id, "config_hash": run.config_hash, "skipped": skipped}
        write_results(config, rows, time.perf_counter() - started, extra=extra)
        if report and rows:
            write_generation_report(config, rows, skipped, command=run.command)
    return rows
