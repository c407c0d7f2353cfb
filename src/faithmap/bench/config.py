"""What a benchmark runs: :class:`BenchConfig`, from Python, a TOML file or command-line flags.

Every name (data, model, method, metric) and every method or metric parameter is checked when
the configuration is built, so a typo fails at once with the list of valid names, before any
model is loaded. :meth:`BenchConfig.identity` is the part of the configuration that decides the
numbers; its hash names the run in the store, so a changed configuration is a new run and
never mixes with an old one, while how the run is executed (executor, workers, batch size,
output folder) can change between a run and its resumption.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018 (insertion and deletion, the default metrics).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from faithmap.api import get_method
from faithmap.bench.defaults import (
    DEFAULT_METHOD_PARAMS,
    DEFAULT_METHODS,
)
from faithmap.bench.sources import DataSource, ModelSource, data_source, model_source
from faithmap.core.devices import resolve_device
from faithmap.core.memory_format import check_memory_format
from faithmap.core.precision import check_precision
from faithmap.core.registry import METHODS
from faithmap.core.validation import check_int
from faithmap.data import ShapesBatch, make_shapes
from faithmap.errors import InvalidParameterError
from faithmap.metrics import DEFAULT_METRICS, METRICS
from faithmap.zoo import BUILTIN_MODELS

DATASETS: Mapping[str, Callable[..., ShapesBatch]] = MappingProxyType({"shapes": make_shapes})
"""Built-in data sets a benchmark can run on, with ground-truth masks, by name."""

EXECUTORS = ("local", "ray")
"""Where tasks run: on this machine (in this process or worker processes), or on a Ray
cluster."""


def _names(value: object, what: str, valid: Sequence[str]) -> tuple[str, ...]:
    names = tuple(value) if isinstance(value, list | tuple) else (value,)
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        problem = f"Unknown {what} {', '.join(map(repr, unknown))}" if unknown else f"No {what}"
        raise InvalidParameterError(
            f"{problem} in the benchmark configuration. Valid names are: {', '.join(valid)}."
        )
    return tuple(dict.fromkeys(names))


def _frozen(params: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in params.items()})


def _check_metric_params(name: str, params: Mapping[str, Any]) -> None:
    signature = inspect.signature(METRICS[name].function).parameters
    accepted = [p.name for p in signature.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidParameterError(
            f"Metric {name!r} got unexpected parameters {', '.join(map(repr, unknown))}. Its "
            f"parameters are: {', '.join(accepted)}."
        )


def _json(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as JSON-ready values (objects by their ``repr``)."""
    plain: dict[str, Any] = json.loads(json.dumps(value, default=repr, sort_keys=True))
    return plain


@dataclass(frozen=True)
class BenchConfig:
    """What to benchmark, and how to run it.

    Parameters
    ----------
    data : "shapes", folder, mapping, tensors or DataSource, default="shapes"
        The built-in data set (:func:`faithmap.data.make_shapes` images with object masks), a
        folder of images (labels from class sub-folders), a mapping ``{"path": folder,
        "masks": mask_folder, "size": "HxW", "keep_aspect": bool}``, tensors ``images`` or
        ``(images, masks)``, or a :class:`~faithmap.bench.sources.DataSource`. Becomes a
        ``DataSource``. A folder holding fewer images than ``n_samples`` sets ``n_samples``.
    models : sequence, default=:data:`faithmap.zoo.BUILTIN_MODELS`
        Each a name from :data:`faithmap.zoo.ZOO_MODELS` (the built-in models and their
        adversarially trained versions), a model file or ``torchvision:``/``timm:``/``hf:``
        spec, a mapping ``{"spec": ..., "outputs": ..., "mean": ..., "size": ...}`` (any
        :class:`~faithmap.core.preprocessing.Preprocessing` field), or a
        :class:`faithmap.Model` / ``nn.Module``. Stored as their names;
        :meth:`model_source` gives each one's :class:`~faithmap.bench.sources.ModelSource`.
    methods : sequence of str, default=:data:`DEFAULT_METHODS`
        Names from :func:`faithmap.available`.
    metrics : sequence of str, default=:data:`faithmap.metrics.DEFAULT_METRICS`
        Names from :data:`faithmap.metrics.METRICS`.
    n_samples : int, default=8
        Images explained by every (model, method): the default benchmark's (16 narrow its
        intervals by a factor of about 1.4, at twice the time).
    seed : int, default=0
        Seed of random methods (those with a ``seed`` parameter) and of metrics that take one.
    data_seed : int, default=0
        Seed of the images.
    out : Path, default="faithmap-bench"
        Folder of the store (``bench.sqlite``), the CSV/JSON exports and the report.
    method_params : mapping, default=:data:`DEFAULT_METHOD_PARAMS`
        Per-method parameters, ``{"rise": {"n_masks": 1000}}``; methods not named use their own
        defaults. These replace the defaults as a whole (``{}``: every method at its own
        defaults), where the command line's ``--param`` and a TOML file's tables are merged
        key by key over them; ``merge_params(DEFAULT_METHOD_PARAMS, {...})`` merges here too.
    metric_params : mapping, default={}
        Per-metric parameters, ``{"insertion": {"steps": 16}}``.
    chunk_size : int, default=8
        Samples per task: a task explains one chunk with one method on one model, then scores
        it with every metric. Smaller chunks lose less work when a run is killed.
    batch_size : int, optional
        Rows per model call; ``None`` lets each :class:`faithmap.Model` measure its fastest.
    executor : {"local", "ray"}, default="local"
        Run tasks on this machine (in this process or in ``workers`` worker processes), or as
        Ray remote functions.
    address : str, optional
        Address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``); ``None`` starts
        a local one.
    workers : int, optional
        Local executor: worker processes sharing this machine's cores (1: this process only).
        ``None`` starts one one-thread worker per core for a CPU run with at least two tasks
        per core, and runs smaller or GPU runs in this process
        (:func:`faithmap.bench.run.local_workers`). Ray executor: the CPUs of the local Ray
        cluster (``None``: all of this machine's).
    device : str, default="cpu"
        Where models run: ``"cpu"``, ``"cuda[:i]"``, ``"mps"`` or ``"auto"``; checked on the
        driver (an unavailable device is an error). Ray tasks ask for one GPU each on CUDA.
        Like the executor, not part of the run's identity.
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        The models' forward-pass arithmetic (:class:`faithmap.Model`'s ``precision``); part of
        the run's identity when not fp32.
    memory_format : {"contiguous", "channels_last"}, default="contiguous"
        The models' layout of 4-D weights and image batches (:class:`faithmap.Model`'s
        ``memory_format``); part of the run's identity when not contiguous.

    Raises
    ------
    InvalidParameterError
        On unknown names or invalid parameters, listing the valid ones, before any work.
    """

    models: Sequence[Any] = BUILTIN_MODELS
    methods: Sequence[str] = DEFAULT_METHODS
    metrics: Sequence[str] = DEFAULT_METRICS
    n_samples: int = 8
    seed: int = 0
    data_seed: int = 0
    out: Path = Path("faithmap-bench")
    method_params: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: DEFAULT_METHOD_PARAMS
    )
    batch_size: int | None = None
    data: Any = "shapes"
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    chunk_size: int = 8
    executor: str = "local"
    address: str | None = None
    workers: int | None = None
    device: str = "cpu"
    precision: str = "fp32"
    memory_format: str = "contiguous"

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalising the fields of a frozen dataclass
        listed = list(self.models) if isinstance(self.models, list | tuple) else [self.models]
        if not listed:
            raise InvalidParameterError("No model in the benchmark configuration.")
        sources = list(dict.fromkeys(model_source(value) for value in listed))  # drop repeats
        names = [source.name for source in sources]
        if len(set(names)) != len(names):
            raise InvalidParameterError(
                f"Two benchmark models share a name ({', '.join(names)}); give each a distinct "
                "name (a model table's name = '...')."
            )
        set_(self, "_sources", {source.name: source for source in sources})
        set_(self, "models", tuple(names))
        set_(self, "data", data_source(self.data))
        set_(self, "methods", _names(self.methods, "method", METHODS.names()))
        set_(self, "metrics", _names(self.metrics, "metric", sorted(METRICS)))
        set_(self, "executor", _names([self.executor], "executor", EXECUTORS)[0])
        for name in ("n_samples", "chunk_size"):
            check_int(getattr(self, name), name, "BenchConfig", low=1)
        for name in ("seed", "data_seed"):
            check_int(getattr(self, name), name, "BenchConfig", low=0)
        for name in ("batch_size", "workers"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, "BenchConfig", low=1)
        if self.address is not None and not isinstance(self.address, str):
            raise InvalidParameterError(
                f"The 'address' parameter of BenchConfig must be a str or None. Got "
                f"{self.address!r} instead."
            )
        if not isinstance(self.out, str | Path):
            raise InvalidParameterError(
                f"The 'out' parameter of BenchConfig must be a folder path (a string). Got "
                f"{self.out!r} instead."
            )
        set_(self, "out", Path(self.out))
        if not isinstance(self.device, str):
            raise InvalidParameterError(
                f"The 'device' parameter of BenchConfig must be a str (cpu, cuda, cuda:I, mps, "
                f"auto). Got {self.device!r} instead."
            )
        resolve_device(self.device, "'device' of BenchConfig")  # available here, or an error
        check_precision(self.precision, "BenchConfig")
        check_memory_format(self.memory_format, "BenchConfig")
        for what, given, valid in (
            ("methods", self.method_params, METHODS.names()),
            ("metrics", self.metric_params, sorted(METRICS)),
        ):
            if unknown := sorted(set(given) - set(valid)):
                raise InvalidParameterError(
                    f"{what[:-1]}_params names unknown {what} {', '.join(map(repr, unknown))}. "
                    f"Valid names are: {', '.join(valid)}."
                )
        set_(self, "method_params", _frozen(self.method_params))
        set_(self, "metric_params", _frozen(self.metric_params))
        for name in self.methods:
            get_method(name, **self.params(name))  # validates the parameters now
        for name in self.metrics:
            _check_metric_params(name, self.metric_params.get(name, {}))
            METRICS[name].check(self.metric_kwargs(name))  # values too, before any store
        self._fit_data()

    def _fit_data(self) -> None:
        """Bound ``n_samples`` by the data and refuse metrics the data cannot score."""
        data: DataSource = self.data
        count = data.count()
        if count is not None and self.n_samples > count:
            object.__setattr__(self, "n_samples", count)
        has_masks = data.is_builtin or data.masks is not None or data.mask_tensors is not None
        needing = [m for m in self.metrics if METRICS[m].needs_masks]
        if needing and not has_masks:
            raise InvalidParameterError(
                f"The metrics {', '.join(needing)} score against ground-truth masks, but the data "
                f"{data.name!r} has none. Give a mask folder (--masks, or masks in the data "
                "table), or drop these metrics."
            )

    def model_source(self, name: str) -> ModelSource:
        """Where the model ``name`` comes from and what was declared about it."""
        sources: dict[str, ModelSource] = self._sources  # type: ignore[attr-defined]
        return sources[name]

    def params(self, method: str) -> dict[str, Any]:
        """The parameters given to ``method``: ``method_params`` plus the seed if it has one."""
        params = dict(self.method_params.get(method, {}))
        if "seed" in getattr(METHODS[method], "__dataclass_fields__", {}):
            params.setdefault("seed", self.seed)
        return params

    def metric_kwargs(self, metric: str) -> dict[str, Any]:
        """The parameters given to ``metric``: ``metric_params`` plus the seed if it takes one."""
        params = dict(self.metric_params.get(metric, {}))
        if "seed" in inspect.signature(METRICS[metric].function).parameters:
            params.setdefault("seed", self.seed)
        return params

    def identity(self) -> dict[str, Any]:
        """What decides the numbers: data, models, full method configurations, metrics, seeds.

        Two configurations with the same identity give the same rows; the executor, batch size,
        device and output folder are not part of it. A precision other than fp32 is, and a
        memory format other than contiguous.
        """
        precision = {} if self.precision == "fp32" else {"precision": self.precision}
        if self.memory_format != "contiguous":
            precision["memory_format"] = self.memory_format
        return _json(
            {
                **precision,
                "data": self.data.identity(),
                "n_samples": self.n_samples,
                "data_seed": self.data_seed,
                "seed": self.seed,
                "chunk_size": self.chunk_size,
                "models": [self.model_source(name).identity() for name in self.models],
                "methods": {m: get_method(m, **self.params(m)).config() for m in self.methods},
                "metrics": {m: self.metric_kwargs(m) for m in self.metrics},
            }
        )

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`identity`: the run's name in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """The whole configuration as plain JSON-ready values."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}
        record["out"] = str(self.out)
        record["data"] = self.data.identity()
        record["models"] = [self.model_source(name).identity() for name in self.models]
        for name in ("method_params", "metric_params"):
            record[name] = {k: dict(v) for k, v in record[name].items()}
        return _json(record)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> BenchConfig:
        """The configuration in a TOML file (see :func:`read_toml`), with ``overrides`` on top.

        Overrides (e.g. command-line flags) replace the file's values, except ``None`` values,
        which are ignored.
        """
        values = read_toml(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The keyword arguments of :class:`BenchConfig` written in a TOML file.

    Top-level keys are the parameters of :class:`BenchConfig`; ``[method_params.<name>]``
    tables are merged key by key over :data:`DEFAULT_METHOD_PARAMS`, ``[metric_params.<name>]``
    tables set a metric's parameters.

    Examples
    --------
    A file holding ``methods = ["rise"]`` and ``method_params.rise = {n_masks = 64}`` gives
    ``{"methods": ["rise"], "method_params": {..., "rise": {"n_masks": 64}}}``.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as err:
        raise InvalidParameterError(
            f"Could not read the benchmark configuration {str(path)!r} ({err})."
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise InvalidParameterError(
            f"The benchmark configuration {str(path)!r} is not valid TOML: {err}."
        ) from err
    valid = [f.name for f in fields(BenchConfig)]
    if unknown := sorted(set(document) - set(valid)):
        raise InvalidParameterError(
            f"Unknown key {', '.join(map(repr, unknown))} in {str(path)!r}. Valid keys are: "
            f"{', '.join(valid)}."
        )
    for name in ("method_params", "metric_params"):
        tables = document.get(name, {})
        if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
            raise InvalidParameterError(
                f"{name} in {str(path)!r} must be tables like [{name}.<name>]. Got {tables!r} "
                "instead."
            )
    document["method_params"] = merge_params(
        DEFAULT_METHOD_PARAMS, document.get("method_params", {})
    )
    return document


def merge_params(
    base: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per-name parameters ``base`` with ``extra`` merged in key by key."""
    merged = {name: dict(params) for name, params in base.items()}
    for name, params in extra.items():
        merged.setdefault(name, {}).update(params)
    return merged
