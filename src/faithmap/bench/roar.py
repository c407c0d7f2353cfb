"""ROAR and KAR: remove (or keep) each method's top pixels in every image, then retrain.

For each method and fraction ``t``, the top ``t`` of the pixels of *every* training and test
image, ranked by that method's map of the image, are replaced by the per-channel mean of the
training set (ROAR); KAR keeps the top ``t`` and replaces the rest. The architecture is
retrained from scratch on the modified training images and its accuracy measured on the
modified test images. A method whose ranking finds the information the task needs makes ROAR
accuracy fall faster, and KAR accuracy stay higher, than a random ranking (the baseline).

Here the explained model is a built-in model with its shipped weights (trained on
:func:`~faithmap.data.make_shapes` at 64 px); maps are made at ``size`` px, the images modified
there and then shrunk (area average) to ``train_size`` px for the retraining, which keeps each
retraining to seconds on a CPU. Pixels are ranked by the channel sum of the map, as faithmap's
insertion, deletion and ROAD rank them (:func:`~faithmap.core.ordering.pixel_ranks`, seeded
random tie-break), so the protocols compare like with like; the reference code ranks each
channel value of the (optionally squared) map instead.

Every retraining ``(mode, method, t, seed)`` and every method's insertion/deletion/ROAD scoring
on the explained model is one task of the benchmark store (:class:`~faithmap.bench.store.Store`):
a run interrupted at any point resumes with no result missing or doubled.

References
----------
Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019 (ROAR, KAR; the mean fill and the random baseline).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.api import get_method
from faithmap.bench.plan import Task
from faithmap.bench.store import Store
from faithmap.bench.work import Row, TaskResult
from faithmap.core.cost import Cost
from faithmap.core.model import Model
from faithmap.core.ordering import pixel_ranks
from faithmap.core.validation import check_float, check_int
from faithmap.data import make_shapes
from faithmap.errors import InvalidParameterError
from faithmap.metrics import METRICS
from faithmap.zoo import BUILTIN_MODELS, architecture, load_builtin
from faithmap.zoo.train import RECIPES, accuracy, fit

__all__ = [
    "EVAL_METRICS",
    "MODES",
    "ORIGINAL",
    "RANDOM",
    "ROAR_METHODS",
    "RetrainTask",
    "RoarConfig",
    "plan_roar",
    "remove_pixels",
    "retrain",
    "run_roar",
]

RANDOM = "random"
"""The baseline's name: a uniformly random map of every image (the paper's random ranking)."""
ORIGINAL = "original"
"""The method name of the retrainings on unmodified images (``t = 0``)."""
MODES = ("roar", "kar")
"""Remove the top pixels (ROAR) or keep them and remove the rest (KAR)."""
EVAL_METRICS = ("insertion", "deletion", "road")
"""Scored on the explained model, without retraining, for the side-by-side comparison."""

ROAR_METHODS: Mapping[str, tuple[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "saliency": ("saliency", MappingProxyType({})),
        "integrated_gradients": ("integrated_gradients", MappingProxyType({"steps": 8})),
        "guided_backprop": ("guided_backprop", MappingProxyType({})),
        "smoothgrad_sq": (
            "smoothgrad",
            MappingProxyType({"kind": "smoothgrad_sq", "n_samples": 8}),
        ),
        "vargrad": ("smoothgrad", MappingProxyType({"kind": "vargrad", "n_samples": 8})),
        "grad_cam": ("grad_cam", MappingProxyType({"layer": "features"})),
    }
)
"""Each label → (registered method, parameters): the paper's gradient, IG, guided
backprop, SmoothGrad-Squared and VarGrad, and Grad-CAM; IG with 8 steps and the ensembles with 8
noisy copies (SmoothGrad's 50 would dominate the run's time: maps of every training image)."""

_TRAIN_SEED = 1000
"""``make_shapes`` seeds: training images ``1000 + 2 * data_seed``, test images one more (no
training set of the shipped weights)."""


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}"


@dataclass(frozen=True)
class RetrainTask(Task):
    """One retraining: ``mode`` with ``method``'s maps at ``fraction``, training seed ``seed``.

    ``method`` is a label of :attr:`RoarConfig.methods`, :data:`RANDOM`, or :data:`ORIGINAL`
    (fraction 0: the unmodified images).
    """

    mode: str = "roar"
    fraction: float = 0.0
    seed: int = 0

    @property
    def id(self) -> str:
        """``"<mode>/<model>/<method>/<percent>/<seed>"``, e.g. ``"roar/cnn/saliency/50/0"``."""
        return f"{self.mode}/{self.model}/{self.method}/{_percent(self.fraction)}/{self.seed}"

    @property
    def metric(self) -> str:
        """The row's metric name: ``"accuracy"`` unmodified, else ``"<mode>@<percent>"``."""
        return "accuracy" if self.method == ORIGINAL else f"{self.mode}@{_percent(self.fraction)}"


def _frozen_methods(
    methods: Mapping[str, Any] | Sequence[str],
) -> Mapping[str, tuple[str, Mapping[str, Any]]]:
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        items = [(name, ROAR_METHODS.get(name, (name, {}))) for name in methods]
    if not items:
        raise InvalidParameterError("No method in the ROAR configuration; name at least one.")
    frozen = {}
    for label, recipe in items:
        if label in (RANDOM, ORIGINAL) or not isinstance(label, str):
            raise InvalidParameterError(
                f"{label!r} cannot label a ROAR method: {RANDOM!r} and {ORIGINAL!r} are the "
                "baseline and the unmodified images, always run. Give another label."
            )
        if not (isinstance(recipe, tuple | list) and len(recipe) == 2):
            raise InvalidParameterError(
                f"The ROAR method {label!r} must be given as (registered name, parameters). "
                f"Got {recipe!r} instead."
            )
        name, params = recipe
        get_method(name, **dict(params))  # validates the name and the parameters now
        frozen[label] = (name, MappingProxyType(dict(params)))
    return MappingProxyType(frozen)


@dataclass(frozen=True)
class RoarConfig:
    """What a ROAR/KAR run measures; checked when built. Its :meth:`identity` names the run.

    Attributes
    ----------
    methods : mapping or sequence of str, default=:data:`ROAR_METHODS`
        Label → (registered method, parameters); a sequence of names takes the recipes of
        :data:`ROAR_METHODS` (or the method's defaults). The random baseline is always added.
    fractions : sequence of float, default=(0.1, 0.5, 0.9)
        Fractions ``t`` of the pixels removed (ROAR) or kept (KAR); the paper's are 0.1-0.9.
    seeds : sequence of int, default=(0, 1)
        Training seeds: each retraining is repeated once per seed.
    modes : sequence of str, default=("roar", "kar")
    model : str, default="cnn"
        The built-in model explained (shipped weights) and the architecture retrained.
    n_train, n_test : int, default=1000, 300
        Training and test images.
    n_eval : int, default=16
        Test images scored by insertion, deletion and ROAD on the explained model.
    size, train_size : int, default=64, 32
        Side of the explained images, and of the images the retraining sees.
    epochs, batch_size : int, default=4, 64
    data_seed : int, default=0
    out : Path, default="faithmap-bench"
        Folder of the store; not part of the identity.
    """

    methods: Any = field(default_factory=lambda: ROAR_METHODS)
    fractions: Sequence[float] = (0.1, 0.5, 0.9)
    seeds: Sequence[int] = (0, 1)
    modes: Sequence[str] = MODES
    model: str = "cnn"
    n_train: int = 1000
    n_test: int = 300
    n_eval: int = 16
    size: int = 64
    train_size: int = 32
    epochs: int = 4
    batch_size: int = 64
    data_seed: int = 0
    out: Path = field(default=Path("faithmap-bench"))

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # normalising the fields of a frozen dataclass
        owner = "RoarConfig"
        set_(self, "methods", _frozen_methods(self.methods))
        fractions = tuple(
            check_float(t, "fractions", owner, low=0.0, high=1.0, low_open=True)
            for t in self.fractions
        )
        if any(t == 1.0 for t in fractions):
            raise InvalidParameterError(
                f"The 'fractions' of {owner} must lie in (0, 1): removing every pixel leaves "
                f"nothing to train on. Got {fractions!r} instead."
            )
        seeds = tuple(check_int(s, "seeds", owner, low=0) for s in self.seeds)
        modes = tuple(self.modes)
        for name, values in (("fractions", fractions), ("seeds", seeds), ("modes", modes)):
            if not values or len(set(values)) != len(values):
                raise InvalidParameterError(
                    f"The '{name}' parameter of {owner} must be a non-empty sequence without "
                    f"repeats. Got {values!r} instead."
                )
        if unknown := [m for m in modes if m not in MODES]:
            raise InvalidParameterError(
                f"Unknown ROAR modes {unknown!r}. Valid modes are: {', '.join(MODES)}."
            )
        if self.model not in BUILTIN_MODELS:
            raise InvalidParameterError(
                f"The 'model' parameter of {owner} must be a built-in model "
                f"({', '.join(BUILTIN_MODELS)}). Got {self.model!r} instead."
            )
        for name in ("n_train", "n_test", "n_eval", "epochs", "batch_size"):
            check_int(getattr(self, name), name, owner, low=1)
        check_int(self.size, "size", owner, low=32)
        check_int(self.train_size, "train_size", owner, low=32)
        if self.train_size > self.size:
            raise InvalidParameterError(
                f"The 'train_size' of {owner} ({self.train_size}) must not exceed 'size' "
                f"({self.size}): the retraining sees the explained images shrunk, not enlarged."
            )
        check_int(self.data_seed, "data_seed", owner, low=0)
        if self.n_eval > self.n_test:
            raise InvalidParameterError(
                f"The 'n_eval' parameter of {owner} ({self.n_eval}) must not exceed n_test "
                f"({self.n_test}): the scored images are the first test images."
            )
        set_(self, "fractions", fractions)
        set_(self, "seeds", seeds)
        set_(self, "modes", modes)
        set_(self, "out", Path(self.out))

    @property
    def labels(self) -> tuple[str, ...]:
        """The method labels, then the random baseline."""
        return (*self.methods, RANDOM)

    def identity(self) -> dict[str, Any]:
        """What decides the numbers (everything but ``out``), as JSON-ready values."""
        return {
            "protocol": "roar",
            "methods": {
                label: {"method": name, **get_method(name, **dict(params)).config()}
                for label, (name, params) in self.methods.items()
            },
            "fractions": list(self.fractions),
            "seeds": list(self.seeds),
            "modes": list(self.modes),
            **{
                name: getattr(self, name)
                for name in (
                    "model",
                    "n_train",
                    "n_test",
                    "n_eval",
                    "size",
                    "train_size",
                    "epochs",
                    "batch_size",
                    "data_seed",
                )
            },
        }

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`identity`: the run's name in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_roar(config: RoarConfig) -> list[Task]:
    """The run's tasks, grouped by method so each method's maps are made once per process:
    the unmodified retrainings, then per label its scoring task and its retrainings."""
    tasks: list[Task] = [
        RetrainTask(config.model, ORIGINAL, {}, seed=seed) for seed in config.seeds
    ]
    for label in config.labels:
        params = {} if label == RANDOM else dict(config.methods[label][1])
        tasks.append(Task(config.model, label, params, 0, config.n_eval))
        tasks += [
            RetrainTask(config.model, label, params, mode=mode, fraction=t, seed=seed)
            for mode in config.modes
            for t in config.fractions
            for seed in config.seeds
        ]
    return tasks


def remove_pixels(
    images: Tensor,
    maps: Tensor,
    fraction: float,
    *,
    fill: Tensor,
    keep: bool = False,
    seed: int = 0,
) -> Tensor:
    """Replace the top ``fraction`` of each image's pixels by ``fill`` (or all others: ``keep``).

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` images.
    maps : Tensor
        ``(N, H, W)`` or ``(N, 1 or C, H, W)`` maps; pixels ranked by the channel sum,
        ties broken by a ``seed``-ed random permutation.
    fraction : float
        In ``[0, 1]``; ``int(fraction * H * W)`` pixels are the top.
    fill : Tensor
        ``(C,)`` value per channel (ROAR: the training set's mean).
    keep : bool, default=False
        KAR: keep the top pixels and replace the rest.

    Returns
    -------
    Tensor
        New images; the input is not changed.

    References
    ----------
    Hooker, Erhan, Kindermans, Kim, NeurIPS 2019.
    """
    n, channels, height, width = images.shape
    if maps.dim() == 3:
        maps = maps[:, None]
    if maps.shape[0] != n or maps.shape[-2:] != images.shape[-2:]:
        raise InvalidParameterError(
            f"ROAR maps of shape {tuple(maps.shape)} do not match images of shape "
            f"{tuple(images.shape)}; give one (H, W) map per image."
        )
    check_float(fraction, "fraction", "remove_pixels", low=0.0, high=1.0)
    top = pixel_ranks(maps, seed) < int(fraction * height * width)
    replaced = (top != keep).view(n, 1, height, width)
    return torch.where(replaced, fill.to(images).view(1, channels, 1, 1), images)


def retrain(
    build: Callable[[], nn.Module],
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Test accuracy of ``build()`` trained from scratch on ``train`` (images, labels).

    The initialisation and the shuffling draw from torch's global random state under ``seed``
    (restored on return); the training is :func:`faithmap.zoo.train.fit`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        fit(model, train[0], train[1], epochs, batch_size, lr, weight_decay, False)
    model.eval()
    return accuracy(model, test[0], test[1])


@dataclass
class _Workspace:
    """What a process makes once per run: the images, the fill, one method's maps at a time."""

    config: RoarConfig
    train: Tensor
    train_labels: Tensor
    test: Tensor
    test_labels: Tensor
    fill: Tensor
    explained: Model
    maps: dict[str, tuple[Tensor, Tensor, Cost]] = field(default_factory=dict)

    @staticmethod
    def of(config: RoarConfig) -> _Workspace:
        seed = _TRAIN_SEED + 2 * config.data_seed
        train = make_shapes(config.n_train, seed=seed, size=config.size)
        test = make_shapes(config.n_test, seed=seed + 1, size=config.size)
        model = Model(load_builtin(config.model), batch_size=config.batch_size)
        return _Workspace(
            config,
            train.images,
            train.labels,
            test.images,
            test.labels,
            train.images.mean(dim=(0, 2, 3)),
            model,
        )

    def method_maps(self, label: str) -> tuple[Tensor, Tensor, Cost]:
        """Maps ``(N, H, W)`` of the training and test images, and their cost."""
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

    def shrink(self, images: Tensor) -> Tensor:
        side = self.config.train_size
        if images.shape[-1] == side:
            return images
        return F.interpolate(images, size=(side, side), mode="area")


def _retrain_result(space: _Workspace, task: RetrainTask) -> TaskResult:
    config, started = space.config, time.perf_counter()
    train, test = space.train, space.test
    if task.method != ORIGINAL:
        train_maps, test_maps, _ = space.method_maps(task.method)
        keep = task.mode == "kar"
        train = remove_pixels(train, train_maps, task.fraction, fill=space.fill, keep=keep)
        test = remove_pixels(test, test_maps, task.fraction, fill=space.fill, keep=keep)
    recipe = RECIPES[config.model]
    value = retrain(
        lambda: architecture(config.model),
        (space.shrink(train), space.train_labels),
        (space.shrink(test), space.test_labels),
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
