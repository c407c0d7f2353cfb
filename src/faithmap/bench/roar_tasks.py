"""ROAR and KAR as tasks of the benchmark store: run or resume a :class:`RoarConfig`.

Every retraining ``(mode, method, t, seed)`` and every method's insertion/deletion/ROAD scoring
on the explained model is one task of the benchmark store (:class:`~faithmap.bench.store.Store`):
a run interrupted at any point resumes with no result missing or doubled. A process makes the
images once, each method's maps once (tasks are planned method by method), and each modified
image set once for all the seeds retrained on it.

References
----------
Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.api import get_method
from faithmap.bench.plan import Task
from faithmap.bench.roar_protocol import (
    EVAL_METRICS,
    ORIGINAL,
    RANDOM,
    RetrainTask,
    RoarConfig,
    plan_roar,
    remove_pixels,
    retrain,
)
from faithmap.bench.store import Store
from faithmap.bench.work import Row, TaskResult
from faithmap.core.cost import Cost
from faithmap.core.model import Model
from faithmap.data import make_shapes
from faithmap.metrics import METRICS
from faithmap.zoo import architecture, load_builtin
from faithmap.zoo.train import RECIPES

__all__ = ["run_roar"]

_TRAIN_SEED = 1000
"""``make_shapes`` seeds: training images ``1000 + 2 * data_seed``, test images one more (no
training set of the shipped weights)."""

_Images = tuple[Tensor, Tensor]
"""Training and test images (or maps) at the retraining's side."""


def _shrink(images: Tensor, side: int) -> Tensor:
    """Area-average ``(N, C, H, W)`` images to ``side`` px (unchanged if already that size)."""
    if images.shape[-1] == side:
        return images
    return F.interpolate(images, size=(side, side), mode="area")


@dataclass
class _Workspace:
    """What a process makes once per run: the images, the fill, one method's maps and one
    modified image set at a time."""

    config: RoarConfig
    train: Tensor
    train_labels: Tensor
    test: Tensor
    test_labels: Tensor
    explained: Model
    small: _Images
    maps: dict[str, tuple[Tensor, Tensor, Cost]] = field(default_factory=dict)
    modified: dict[tuple[str, str, float], _Images] = field(default_factory=dict)

    @staticmethod
    def of(config: RoarConfig) -> _Workspace:
        seed = _TRAIN_SEED + 2 * config.data_seed
        train = make_shapes(config.n_train, seed=seed, size=config.size)
        test = make_shapes(config.n_test, seed=seed + 1, size=config.size)
        model = Model(load_builtin(config.model), batch_size=config.batch_size)
        small = (_shrink(train.images, config.train_size), _shrink(test.images, config.train_size))
        return _Workspace(
            config, train.images, train.labels, test.images, test.labels, model, small
        )

    def method_maps(self, label: str) -> tuple[Tensor, Tensor, Cost]:
        """Maps ``(N, H, W)`` of the training and test images at ``size``, and their cost."""
        if label not in self.maps:
            self.maps.clear()  # one method's maps at a time
            self.maps[label] = self._make_maps(label)
        return self.maps[label]

    def _make_maps(self, label: str) -> tuple[Tensor, Tensor, Cost]:
        images = torch.cat([self.train, self.test])
        if label == RANDOM:
            generator = torch.Generator().manual_seed(self.config.data_seed)
            maps = torch.rand(images.shape[0], *images.shape[-2:], generator=generator)
            cost = Cost()
        else:
            name, params = self.config.methods[label]
            method = get_method(name, **dict(params))
            parts, cost = [], Cost()
            for chunk in torch.split(images, 256):
                explanation = method.explain(self.explained, chunk)
                parts.append(explanation.attributions.detach().float().sum(1))
                cost += explanation.cost
            maps = torch.cat(parts)
        return maps[: len(self.train)], maps[len(self.train) :], cost

    def images_for(self, task: RetrainTask) -> _Images:
        """The task's training and test images at ``train_size``, with its pixels removed."""
        if task.method == ORIGINAL:
            return self.small
        key = (task.method, task.mode, task.fraction)
        if key not in self.modified:
            self.modified.clear()  # one modified set at a time: the seeds follow each other
            side, keep = self.config.train_size, task.mode == "kar"
            fill: Tensor | str = self.config.fill
            if fill == "mean":
                fill = self.small[0].mean(dim=(0, 2, 3))
            maps = self.method_maps(task.method)[:2]
            self.modified[key] = tuple(  # type: ignore[assignment]
                remove_pixels(x, _shrink(m[:, None], side), task.fraction, fill=fill, keep=keep)
                for x, m in zip(self.small, maps, strict=True)
            )
        return self.modified[key]


def _retrain_result(space: _Workspace, task: RetrainTask) -> TaskResult:
    config, started = space.config, time.perf_counter()
    train, test = space.images_for(task)
    recipe = RECIPES[config.model]
    value = retrain(
        lambda: architecture(config.model),
        (train, space.train_labels),
        (test, space.test_labels),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=task.seed,
    )
    seconds = time.perf_counter() - started
    passes = config.n_train * config.epochs
    row = Row(
        model=task.model,
        method=task.method,
        metric=task.metric,
        sample=task.seed,
        value=value,
        target=-1,
        explain_forward=0.0,
        explain_backward=0.0,
        explain_seconds=0.0,
        metric_forward=float(passes + config.n_test),
        metric_backward=float(passes),
        metric_seconds=seconds,
        params=json.dumps({"mode": task.mode, "fraction": task.fraction, **task.params}),
    )
    cost = Cost(passes + config.n_test, passes, seconds)
    return TaskResult(task, [row], torch.empty(0), {}, cost)


def _scoring_result(space: _Workspace, task: Task) -> TaskResult:
    """Insertion, deletion and ROAD (at the ROAR fractions) of the label's maps of the first
    test images, on the explained model."""
    _, test_maps, map_cost = space.method_maps(task.method)
    n = task.stop
    inputs, maps = space.test[:n], test_maps[:n, None]
    per_image = len(space.train) + len(space.test)
    rows, spent = [], Cost()
    for metric in EVAL_METRICS:
        params: dict[str, Any] = {"fractions": space.config.fractions} if metric == "road" else {}
        result = METRICS[metric].run(space.explained, inputs, maps, **params)
        spent += result.cost
        values = result.values.double().tolist()
        rows += [
            Row(
                model=task.model,
                method=task.method,
                metric=metric,
                sample=i,
                value=float(values[i]),
                target=-1,
                explain_forward=map_cost.forward / per_image,
                explain_backward=map_cost.backward / per_image,
                explain_seconds=map_cost.seconds / per_image,
                metric_forward=result.cost.forward / n,
                metric_backward=result.cost.backward / n,
                metric_seconds=result.cost.seconds / n,
                params=json.dumps(task.params, sort_keys=True, default=repr),
                higher_is_better=result.higher_is_better,
            )
            for i in range(n)
        ]
    return TaskResult(task, rows, maps[:, 0].contiguous(), {}, spent)


def run_roar(
    config: RoarConfig | None = None,
    *,
    log: Callable[[str], None] | None = None,
    command: str = "",
) -> list[Row]:
    """Run (or resume) ROAR and KAR of ``config`` in its store; return the run's rows.

    Rows: per seed the unmodified accuracy (method :data:`ORIGINAL`, metric ``"accuracy"``,
    ``sample`` = seed); per label, mode, fraction and seed one accuracy (metric e.g.
    ``"roar@50"``); per label insertion, deletion and ROAD of ``n_eval`` test images.
    ``log`` is called with a line after each stored task. Processes running the same
    configuration on the same store share the work: each skips the tasks the others stored
    (the label order of ``methods`` is not part of the identity, so a second process given
    them in reverse starts at the other end).
    """
    config = config or RoarConfig()
    tasks = plan_roar(config)
    started = time.perf_counter()
    with Store(config.out) as store:
        run = store.open_run(config, command=command)
        done = store.done(run)
        todo = [task for task in tasks if task.id not in done]
        space: _Workspace | None = None
        for task in todo:
            if task.id in store.done(run):  # finished meanwhile by another process
                continue
            space = space or _Workspace.of(config)
            if isinstance(task, RetrainTask):
                result = _retrain_result(space, task)
            else:
                result = _scoring_result(space, task)
            written = store.write(run, result)
            if log is not None:
                seconds = time.perf_counter() - started
                what = "stored" if written else "already stored by another process"
                log(f"[{len(store.done(run))}/{len(tasks)}] {task.id} {what} ({seconds:.0f} s)")
        return store.rows(run)
