"""``faithmap bench --suite bam``: relative feature importance with known ground truth (BAM).

The suite explains :func:`faithmap.data.make_bam` images with the gradient and CAM methods of
Yang and Kim on the two shipped models (:mod:`faithmap.zoo.bam`: one trained on the object's
class, one on the scene's, same pixels) and scores each method with the model contrast score,
the input dependence rate and the input independence rate (:mod:`faithmap.metrics.bam`): the
positive map, scaled by its minimum and 99th percentile, averaged over the object mask, for the
predicted class, on the images both models (or both inputs) classify correctly. IIR's
functionally insignificant patch is :func:`~faithmap.zoo.bam.insignificant_patch` on the scene
model; a pair is scored only when the patch moves the logits by less than ``max_change``.

Every step is a task of the benchmark store (:class:`~faithmap.bench.store.Store`): one
``setup`` task records which images each model classifies correctly and how far the patch moved
the logits, then one task per method writes its per-image MCS, IDR and IIR and the object
model's maps. An interrupted run resumes where it stopped, with no result missing or doubled.
:func:`~faithmap.bench.bam_findings.summarize` turns the rows into the table and the paper's
claims, each "holds" or "does not hold"; :func:`write_bam_results` writes them with a report.
RMCS (models with the object made relevant in ``i`` scene classes) is not built: it needs one
retrained scene model per ``i``.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", arXiv
1907.09701, 2019 (``bam/metrics.py``, ``bam/attributions.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import torch
from torch import Tensor, nn

from faithmap.api import get_method
from faithmap.bench.bam_findings import BAM_METRICS, CHECKS, SETUP, summarize
from faithmap.bench.plan import Task
from faithmap.bench.report import write_report
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.store import Store
from faithmap.bench.work import Row, TaskResult
from faithmap.core.cost import Cost
from faithmap.core.model import Model
from faithmap.core.validation import check_float, check_int
from faithmap.data.bam import BamBatch, make_bam
from faithmap.errors import InvalidParameterError
from faithmap.metrics.bam import (
    input_dependence_rate,
    input_independence_rate,
    model_contrast_score,
)
from faithmap.zoo.bam import insignificant_patch, load_bam

__all__ = [
    "BAM_DATA",
    "BAM_METHODS",
    "SUITE_FIELDS",
    "BamConfig",
    "plan_bam",
    "run_bam",
    "write_bam_results",
]

BAM_DATA: Final = "bam"
"""The ``data`` of the BAM :class:`~faithmap.bench.suites.Suite`: the CLI runs this module."""

BAM_METHODS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        # Signed per-channel maps: BAM sums the positive channel values itself.
        "saliency": {"absolute": False, "reduce": "none"},
        "smoothgrad": {"n_samples": 16, "reduce": "none"},
        "guided_backprop": {"reduce": "none"},
        "integrated_gradients": {"steps": 16, "reduce": "none"},
        "grad_cam": {},
        "input_x_gradient": {"reduce": "none"},
    }
)
"""BAM's methods (Gradient, SmoothGrad, Guided Backprop, IG, Grad-CAM, Gradient x Input) and
their parameters; IG's baseline is the black image, as in BAM."""

SUITE_FIELDS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "name": "bam",
        "reference": (
            'Yang and Kim, "Benchmarking Attribution Methods with Relative Feature '
            'Importance", arXiv 1907.09701, 2019 (MCS, IDR, IIR)'
        ),
        "models": ("bam_object", "bam_scene"),
        "families": MappingProxyType(
            {name: "cam" if name == "grad_cam" else "gradient" for name in BAM_METHODS}
        ),
        "metrics": BAM_METRICS,
        "method_params": BAM_METHODS,
        "n_samples": 144,
        "data_seed": 7,
        "data": BAM_DATA,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them)."""


@dataclass(frozen=True)
class BamConfig:
    """What a BAM run measures; checked when built. Its :meth:`identity` names the run.

    Attributes
    ----------
    methods : sequence of str, default=all of :data:`BAM_METHODS`
    n_images : int, default=144
        :func:`~faithmap.data.make_bam` images (4 of each object x scene pair).
    data_seed : int, default=7
        Their seed (the shipped models were trained on seeds 0 and 1).
    patch_steps : int, default=100
        Adam steps of the insignificant patch.
    max_change : float, default=0.1
        IIR scores a pair only when the patch changes the logits by less than this (relative).
    tolerance : float, default=0.1
        IIR's largest relative change of the statistic counted as unchanged (BAM's 10 %).
    out : Path, default="faithmap-bench"
        Folder of the store; not part of the identity.
    """

    methods: Sequence[str] = tuple(BAM_METHODS)
    n_images: int = 144
    data_seed: int = 7
    patch_steps: int = 100
    max_change: float = 0.1
    tolerance: float = 0.1
    out: Path = field(default=Path("faithmap-bench"))

    def __post_init__(self) -> None:
        owner = "BamConfig"
        methods = tuple(self.methods)
        unknown = [m for m in methods if m not in BAM_METHODS]
        if unknown or not methods or len(set(methods)) != len(methods):
            raise InvalidParameterError(
                f"The BAM suite runs distinct methods among {', '.join(BAM_METHODS)}. Got "
                f"{', '.join(map(repr, methods)) or 'none'}."
            )
        for name in ("n_images", "patch_steps"):
            check_int(getattr(self, name), name, owner, low=1)
        check_int(self.data_seed, "data_seed", owner, low=0)
        for name in ("max_change", "tolerance"):
            check_float(getattr(self, name), name, owner, low=0.0, low_open=True)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "out", Path(self.out))

    def params(self, method: str) -> dict[str, Any]:
        """The method's full configuration (its defaults filled in)."""
        return dict(get_method(method, **dict(BAM_METHODS[method])).config())

    def identity(self) -> dict[str, Any]:
        """What decides the numbers (everything but ``out``), as JSON-ready values."""
        return {
            "protocol": "bam",
            "models": ["bam_object", "bam_scene"],
            "methods": {m: self.params(m) for m in self.methods},
            **{
                name: getattr(self, name)
                for name in ("n_images", "data_seed", "patch_steps", "max_change", "tolerance")
            },
        }

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`identity`: the run's name in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_bam(config: BamConfig) -> list[Task]:
    """The run's tasks: the setup (correctness, patch), then one per method."""
    n = config.n_images
    return [Task("bam", SETUP, {}, 0, n)] + [
        Task("bam", method, config.params(method), 0, n) for method in config.methods
    ]


def _predicted(model: nn.Module, images: Tensor) -> Tensor:
    with torch.inference_mode():
        labels: Tensor = model(images).argmax(1)
    return labels


class _Workspace:
    """The data, the two models, the patched scenes and which images count (once per process)."""

    def __init__(self, config: BamConfig) -> None:
        self.config = config
        self.batch: BamBatch = make_bam(config.n_images, seed=config.data_seed)
        self.object_model, self.scene_model = load_bam("object"), load_bam("scene")

    @cached_property
    def patch(self) -> tuple[Tensor, Tensor]:
        """The scenes with the insignificant patch and the patch's relative logit change."""
        batch = self.batch
        return insignificant_patch(
            self.scene_model,
            batch.scene_only,
            batch.images,
            batch.masks,
            steps=self.config.patch_steps,
        )

    @cached_property
    def checks(self) -> dict[str, Tensor]:
        """Per image: each model's correctness on each input, and the patch's logit change."""
        batch, scene = self.batch, self.scene_model
        patched, change = self.patch
        return {
            "object_correct": _predicted(self.object_model, batch.images) == batch.object_labels,
            "scene_correct": _predicted(scene, batch.images) == batch.scene_labels,
            "scene_only_correct": _predicted(scene, batch.scene_only) == batch.scene_labels,
            "patched_correct": _predicted(scene, patched) == batch.scene_labels,
            "patch_change": change,
        }

    def valid(self) -> dict[str, Tensor]:
        """The images each metric scores (BAM's ``corr_indices``; IIR: a small logit change)."""
        c = self.checks
        alone = c["scene_only_correct"]
        return {
            "model_contrast_score": c["object_correct"] & c["scene_correct"],
            "input_dependence_rate": c["scene_correct"] & alone,
            "input_independence_rate": c["patched_correct"]
            & alone
            & (c["patch_change"] < self.config.max_change),
        }


def _row(task: Task, metric: str, sample: int, value: float, spent: Cost, n: int) -> Row:
    return Row(
        model=task.model,
        method=task.method,
        metric=metric,
        sample=sample,
        value=value,
        target=-1,
        explain_forward=spent.forward / n,
        explain_backward=spent.backward / n,
        explain_seconds=spent.seconds / n,
        metric_forward=0.0,
        metric_backward=0.0,
        metric_seconds=0.0,
        params=json.dumps(task.params, sort_keys=True, default=repr),
    )


def _setup_result(space: _Workspace, task: Task) -> TaskResult:
    started = time.perf_counter()
    values = {name: space.checks[name].double().tolist() for name in CHECKS}
    spent = Cost(seconds=time.perf_counter() - started)
    n = task.size
    rows = [_row(task, name, i, values[name][i], spent, n) for i in range(n) for name in CHECKS]
    return TaskResult(task, rows, torch.empty(0), {}, spent)


def _method_result(space: _Workspace, task: Task) -> TaskResult:
    batch, scene = space.batch, Model(space.scene_model)
    method = get_method(task.method, **dict(BAM_METHODS[task.method]))
    patched, _ = space.patch
    on_object = method.explain(Model(space.object_model), batch.images, None)
    on_scene = method.explain(scene, batch.images, None)
    alone = method.explain(scene, batch.scene_only, None)
    with_patch = method.explain(scene, patched, None)
    spent = on_object.cost + on_scene.cost + alone.cost + with_patch.cost
    valid = space.valid()
    results = {
        "model_contrast_score": model_contrast_score(
            on_object, on_scene, batch.masks, valid=valid["model_contrast_score"]
        ),
        "input_dependence_rate": input_dependence_rate(
            alone, on_scene, batch.masks, valid=valid["input_dependence_rate"]
        ),
        "input_independence_rate": input_independence_rate(
            alone,
            with_patch,
            batch.masks,
            tolerance=space.config.tolerance,
            valid=valid["input_independence_rate"],
        ),
    }
    values = {name: result.values.double().cpu().tolist() for name, result in results.items()}
    n = task.size
    rows = [_row(task, name, i, values[name][i], spent, n) for i in range(n) for name in values]
    maps = on_object.attributions.detach().double().clamp(min=0).sum(1).float().cpu()
    return TaskResult(task, rows, maps.contiguous(), {}, spent)


def run_bam(
    config: BamConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    command: str = "",
) -> list[Row]:
    """Run (or resume) the BAM suite of ``config`` in its store; return the run's rows.

    Rows: from the setup task, per image ``object_correct``, ``scene_correct``,
    ``scene_only_correct``, ``patched_correct`` (1 or 0) and ``patch_change``; per method and
    image its MCS, IDR and IIR values (NaN where the image is not scored). ``log`` is called with
    a line after each stored task.
    """
    config = config or BamConfig()
    tasks = plan_bam(config)
    started = time.perf_counter()
    with Store(config.out) as store:
        run = store.open_run(config, command=command)
        space: _Workspace | None = None
        for task in tasks:
            if task.id in store.done(run):  # stored earlier, or meanwhile by another process
                continue
            space = space or _Workspace(config)
            make = _setup_result if task.method == SETUP else _method_result
            written = store.write(run, make(space, task))
            if log is not None:
                what = "stored" if written else "already stored by another process"
                log(
                    f"[{len(store.done(run))}/{len(tasks)}] {task.id} {what} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
        return store.rows(run)


def write_bam_results(
    config: BamConfig, out: Path, *, seconds: float, command: str = ""
) -> list[Path]:
    """Write ``bam_summary.json`` (means, setup checks, findings, time) and the report
    ``bam_report.html`` (the per-image rows, the object model's maps) of the stored run."""
    with Store(config.out) as store:
        run = store.run(config.hash)
        rows, maps = store.rows(run), store.maps(run)
    result = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "bam_summary.json"
    record = {
        "suite": "bam",
        "config": config.identity(),
        "scores": result.scores,
        "scored": result.scored,
        "checks": result.checks,
        "findings": result.findings,
        "seconds": round(seconds, 1),
        "command": command,
    }
    summary_path.write_text(json.dumps(record, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    report_rows = [
        ReportRow(
            sample=row.sample,
            model="bam_object+bam_scene",
            method=row.method,
            metric=row.metric,
            value=row.value,
            expl_passes=row.explain_forward + row.explain_backward,
            expl_seconds=row.explain_seconds,
            metric_passes=0.0,
            metric_seconds=0.0,
        )
        for row in rows
        if row.method != SETUP
    ]
    batch = make_bam(config.n_images, seed=config.data_seed)
    attributions = {
        ("bam_object+bam_scene", method): torch.stack([by_sample[i] for i in range(len(batch))])
        for (_, method), by_sample in maps.items()
    }
    data = ReportData(
        run_id=run.config_hash,
        config=config.identity(),
        rows=report_rows,
        higher_is_better=dict.fromkeys(BAM_METRICS, True),
        attributions=attributions,
        images=batch.images,
        masks=batch.masks,
        findings=result.findings,
        command=command,
        labels=batch.object_labels.tolist(),
        class_names=batch.object_names,
    )
    return [summary_path, write_report(data, out / "bam_report.html")]
