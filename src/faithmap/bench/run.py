"""The benchmark: built-in data × models × methods × metrics, one row per measurement.

Every (model, method) pair is one task: the method explains the whole sample batch in one
:func:`faithmap.explain` call, then each metric scores that explanation. Each sample gives one
:class:`Row` per metric, with the explanation's and the metric's cost per image. The rows are
written to ``results.csv`` and ``results.json`` (with the configuration and the summary) in
the output folder.
"""

from __future__ import annotations

import csv
import json
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from tqdm import tqdm

from faithmap.api import explain, get_method
from faithmap.cost import Cost
from faithmap.data import make_shapes
from faithmap.errors import InvalidParameterError
from faithmap.explanation import Explanation
from faithmap.metrics import METRICS, CurveResult
from faithmap.model import Model
from faithmap.registry import available, method_class
from faithmap.validation import check_int
from faithmap.zoo import BUILTIN_MODELS, load_builtin

DEFAULT_METHOD_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "rise": MappingProxyType({"n_masks": 1000}),
        "kernel_shap": MappingProxyType({"n_samples": 200}),
        "lime": MappingProxyType({"n_samples": 200}),
        "sobol": MappingProxyType({"n_design": 4}),
        "hsic": MappingProxyType({"n_design": 200}),
        "smdl": MappingProxyType({"regions": "slic:25"}),
        "lima": MappingProxyType({"regions": "slic:25"}),
        "extremal": MappingProxyType({"iterations": 100}),
    }
)
"""Parameters the benchmark gives methods by default, lighter than the methods' own defaults
(RISE's 2000 masks, KernelSHAP's and LIME's 1000 samples, Sobol's 32 designs, SMDL's and LiMA's
49 superpixels, whose searches cost about R^2 passes, extremal perturbation's 300 iterations)
so the default
run stays within minutes on two CPU cores. Every row records the full parameters used."""


def _names(value: Sequence[str], what: str, valid: Sequence[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        problem = f"Unknown {what} {', '.join(map(repr, unknown))}" if unknown else f"No {what}"
        raise InvalidParameterError(
            f"{problem} in the benchmark configuration. Valid names are: {', '.join(valid)}."
        )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark.

    Parameters
    ----------
    models : sequence of str, default=all built-in models
        Names from :data:`faithmap.zoo.BUILTIN_MODELS`.
    methods : sequence of str, default=every registered method
        Names from :func:`faithmap.available`.
    metrics : sequence of str, default=("insertion", "deletion")
        Names from :data:`faithmap.metrics.METRICS`, run at their defaults.
    n_samples : int, default=16
        Images of :func:`faithmap.data.make_shapes` explained by every (model, method).
    seed : int, default=0
        Seed of random methods (those with a ``seed`` parameter) and of the metrics' tie-break.
    data_seed : int, default=0
        Seed of the images.
    out : Path, default="faithmap-bench"
        Folder for ``results.csv`` and ``results.json``.
    method_params : mapping, default=:data:`DEFAULT_METHOD_PARAMS`
        Per-method parameters, ``{"rise": {"n_masks": 1000}}``; methods not named use their own
        defaults. These replace the defaults as a whole.
    batch_size : int, optional
        Rows per model call; ``None`` lets each :class:`faithmap.Model` measure its fastest.

    Raises
    ------
    InvalidParameterError
        On unknown names or invalid parameters, listing the valid ones, before any work.
    """

    models: Sequence[str] = BUILTIN_MODELS
    methods: Sequence[str] = field(default_factory=lambda: tuple(available()))
    metrics: Sequence[str] = ("insertion", "deletion")
    n_samples: int = 16
    seed: int = 0
    data_seed: int = 0
    out: Path = Path("faithmap-bench")
    method_params: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: DEFAULT_METHOD_PARAMS
    )
    batch_size: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalising the fields of a frozen dataclass
        set_(self, "models", _names(self.models, "model", BUILTIN_MODELS))
        set_(self, "methods", _names(self.methods, "method", available()))
        set_(self, "metrics", _names(self.metrics, "metric", sorted(METRICS)))
        check_int(self.n_samples, "n_samples", "BenchConfig", low=1)
        check_int(self.seed, "seed", "BenchConfig", low=0)
        check_int(self.data_seed, "data_seed", "BenchConfig", low=0)
        if self.batch_size is not None:
            check_int(self.batch_size, "batch_size", "BenchConfig", low=1)
        set_(self, "out", Path(self.out))
        if unknown := sorted(set(self.method_params) - set(available())):
            raise InvalidParameterError(
                f"method_params names unknown methods {', '.join(map(repr, unknown))}. Valid "
                f"names are: {', '.join(available())}."
            )
        frozen = {k: MappingProxyType(dict(v)) for k, v in self.method_params.items()}
        set_(self, "method_params", MappingProxyType(frozen))
        for name in self.methods:
            get_method(name, **self.params(name))  # validates the parameters now

    def params(self, method: str) -> dict[str, Any]:
        """The parameters given to ``method``: ``method_params`` plus the seed if it has one."""
        params = dict(self.method_params.get(method, {}))
        if "seed" in getattr(method_class(method), "__dataclass_fields__", {}):
            params.setdefault("seed", self.seed)
        return params

    def record(self) -> dict[str, Any]:
        """The configuration as plain JSON-ready values."""
        return {
            "models": list(self.models),
            "methods": list(self.methods),
            "metrics": list(self.metrics),
            "n_samples": self.n_samples,
            "seed": self.seed,
            "data_seed": self.data_seed,
            "out": str(self.out),
            "method_params": {k: dict(v) for k, v in self.method_params.items()},
            "batch_size": self.batch_size,
        }


@dataclass(frozen=True)
class Task:
    """One unit of work: explain the samples with ``method`` on ``model``, then score them."""

    model: str
    method: str
    params: Mapping[str, Any]


def plan(config: BenchConfig) -> list[Task]:
    """The tasks of a benchmark, model-major: every model × every method."""
    return [
        Task(model, method, MappingProxyType(config.params(method)))
        for model in config.models
        for method in config.methods
    ]


@dataclass(frozen=True)
class Row:
    """One measurement: a metric of one sample's explanation by one method on one model.

    Costs are per image: the explanation's cost (the whole batch's, divided by the number of
    samples; its seconds exclude the model's one-time batch-size calibration) and the metric's.
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


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation of each metric for one (model, method), and its cost."""

    model: str
    method: str
    metrics: Mapping[str, tuple[float, float]]
    passes_per_image: float
    seconds_per_image: float
    metric_seconds_per_image: float


def summarize(rows: Sequence[Row]) -> list[Summary]:
    """Aggregate rows per (model, method), in the order they first appear."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.method), []).append(row)
    summaries = []
    for (model, method), group in groups.items():
        by_metric: dict[str, list[float]] = {}
        for row in group:
            by_metric.setdefault(row.metric, []).append(row.value)
        first_metric = [row for row in group if row.metric == group[0].metric]
        summaries.append(
            Summary(
                model=model,
                method=method,
                metrics={
                    name: (statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0)
                    for name, v in by_metric.items()
                },
                passes_per_image=statistics.fmean(
                    r.explain_forward + r.explain_backward for r in first_metric
                ),
                seconds_per_image=statistics.fmean(r.explain_seconds for r in first_metric),
                metric_seconds_per_image=statistics.fmean(r.metric_seconds for r in group),
            )
        )
    return summaries


def write_results(config: BenchConfig, rows: Sequence[Row], seconds: float) -> tuple[Path, Path]:
    """Write ``results.csv`` (the rows) and ``results.json`` (configuration, summary, rows)."""
    config.out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = config.out / "results.csv", config.out / "results.json"
    names = [f.name for f in fields(Row)]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    document = {
        "config": config.record(),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
        },
        "seconds": seconds,
        "summary": [asdict(s) for s in summarize(rows)],
        "rows": [asdict(row) for row in rows],
    }
    json_path.write_text(json.dumps(document, indent=1))
    return csv_path, json_path


def _rows(
    task: Task, explanation: Explanation, explain_cost: Cost, result: CurveResult, metric_cost: Cost
) -> list[Row]:
    n = len(explanation)
    targets = explanation.target.tolist() if explanation.target is not None else [-1] * n
    params = json.dumps(dict(explanation.config), default=repr, sort_keys=True)
    return [
        Row(
            model=task.model,
            method=task.method,
            metric=result.metric,
            sample=i,
            value=float(result.auc[i]),
            target=int(targets[i]),
            explain_forward=explain_cost.forward / n,
            explain_backward=explain_cost.backward / n,
            explain_seconds=explain_cost.seconds / n,
            metric_forward=metric_cost.forward / n,
            metric_backward=metric_cost.backward / n,
            metric_seconds=metric_cost.seconds / n,
            params=params,
        )
        for i in range(n)
    ]


def run_bench(config: BenchConfig | None = None, *, progress: bool = True) -> list[Row]:
    """Run the benchmark and write its results; returns one :class:`Row` per measurement.

    Parameters
    ----------
    config : BenchConfig, optional
        ``None`` runs the default benchmark, ``BenchConfig()``.
    progress : bool, default=True
        Show a progress bar (on stderr) over the tasks, with the passes per second.

    Returns
    -------
    list of Row
        ``n_samples × models × methods × metrics`` rows, model-major.
    """
    config = config or BenchConfig()
    tasks = plan(config)
    models = {  # loading every model first: a missing one fails before any work
        name: Model(load_builtin(name), batch_size=config.batch_size) for name in config.models
    }
    inputs = make_shapes(config.n_samples, seed=config.data_seed).images
    rows: list[Row] = []
    started = time.perf_counter()
    bar = tqdm(tasks, disable=not progress, unit="task", dynamic_ncols=True)
    with bar:
        for task in bar:
            bar.set_description(f"{task.model}/{task.method}")
            model = models[task.model]
            explanation = explain(model, inputs, method=task.method, **task.params)
            spent = explanation.cost
            for metric in config.metrics:
                result = METRICS[metric](model, inputs, explanation, seed=config.seed)
                spent += result.cost
                rows += _rows(task, explanation, explanation.cost, result, result.cost)
            bar.set_postfix(passes_s=f"{spent.passes / max(spent.seconds, 1e-9):.0f}")
    write_results(config, rows, time.perf_counter() - started)
    return rows
