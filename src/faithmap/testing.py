"""Contract batteries for methods and metrics: what every registered entry must keep.

scikit-learn's ``check_estimator`` / ``parametrize_with_checks`` idea for faithmap. Each battery
runs a list of named checks on a tiny model and data it makes itself (a seeded CNN with batch
norm and dropout, five random 3x16x16 images, box masks; a small MLP on eight-column rows for
tabular metrics), so a new method or metric is checked by one call::

    from faithmap.testing import check_method, check_metric

    check_method("occlusion", {"window": 4, "stride": 4})
    check_metric("insertion", {"steps": 4})

A failing check raises :class:`AssertionError` whose message names the entry and the check. For
pytest, :func:`method_checks` and :func:`metric_checks` yield each check as ``(name, callable)``
so that a test can be parametrised per check::

    CHECKS = list(method_checks("occlusion", {"window": 4, "stride": 4}))

    @pytest.mark.parametrize("check", [c for _, c in CHECKS], ids=[n for n, _ in CHECKS])
    def test_occlusion(check):
        check()

``params`` are the entry's own parameters (cheap settings such as few steps); the batteries add
or override only what a check is about (``seed``, or one invalid value at a time).
:func:`check_registered_methods` checks that every concrete :class:`~faithmap.core.method.Method`
subclass defined in faithmap is registered.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.constraints import NO_INVALID_VALUE, ConstraintList, describe, invalid_value
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.metric import MetricResult, MetricSpec
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import METHODS, METRICS, make_method
from faithmap.errors import InvalidParameterError, ModelError, ShapeError

__all__ = [
    "CLASSES",
    "ConstantNet",
    "FailsAfter",
    "TinyCNN",
    "TinyMLP",
    "assert_same_state",
    "batched",
    "check_method",
    "check_metric",
    "check_registered_methods",
    "faithmap_method_classes",
    "method_checks",
    "metric_checks",
    "module_state",
    "tiny_images",
    "tiny_masks",
    "tiny_mlp",
    "tiny_model",
    "tiny_row_masks",
    "tiny_rows",
]

Check = Callable[[], None]
"""One check, ready to run: raises :class:`AssertionError` naming itself when it fails."""

SAMPLES, CHANNELS, SIZE, CLASSES, FEATURES = 5, 3, 16, 4, 8
"""The battery's data: five 3x16x16 images (or rows of eight columns) and four classes."""

ATOL, RTOL = 1e-5, 1e-4
"""Tolerances of the comparisons that allow float round-off (batching, one sample alone)."""

BATCH_SIZE = 64
"""The batch size of the checks that are not about batching (a measured size costs a timing run
per fresh model)."""

EXPLAINING_METHOD = "saliency"
"""The registered method whose explanations the metric battery scores (and re-explains)."""


# --------------------------------------------------------------------------------------------
# The tiny models and data


class TinyCNN(nn.Module):
    """A small CNN with batch norm and dropout, so eval/train mode changes its output."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(CHANNELS, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        logits: Tensor = self.head(self.dropout(pooled))
        return logits


class TinyMLP(nn.Module):
    """A small MLP on rows of ``FEATURES`` columns, for tabular metrics."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(torch.tanh(self.hidden(x)))
        return logits


class ConstantNet(nn.Module):
    """A model whose output ignores its input: ``1 / classes`` for every class.

    The output stays connected to the input in autograd (with zero gradient), so methods that
    differentiate it run; and its target score is ``1 / classes`` both as a logit and after a
    softmax, for any target, so a metric's ``"score"`` value does not depend on its activation.
    Its one layer has parameters (``reset_parameters``), for metrics that randomise layers.
    """

    def __init__(self, classes: int = CLASSES, channels: int = CHANNELS) -> None:
        super().__init__()
        self.classes = classes
        self.layer = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.flatten(2).mean(2) if x.dim() > 2 else x
        out: Tensor = self.layer(pooled[:, : self.layer.in_features]) * 0.0 + 1.0 / self.classes
        return out


class FailsAfter(nn.Module):
    """Wraps a net and raises ``RuntimeError("simulated failure")`` from its ``n``-th call on."""

    def __init__(self, net: nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.calls, self.n = net, 0, n

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("simulated failure")
        out: Tensor = self.net(x)
        return out


def tiny_model(seed: int = 0) -> TinyCNN:
    """The battery's CNN, in eval mode, its weights and batch-norm statistics drawn from ``seed``.

    The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyCNN()
        norm = net.features[1]
        assert isinstance(norm, nn.BatchNorm2d)
        assert norm.running_mean is not None and norm.running_var is not None
        with torch.no_grad():
            norm.running_mean.uniform_(-0.1, 0.1)
            norm.running_var.uniform_(0.5, 1.5)
    return net.eval()


def tiny_mlp(seed: int = 0) -> TinyMLP:
    """The battery's MLP for tabular rows, in eval mode (global random state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyMLP()
    return net.eval()


def batched(net: nn.Module) -> Model:
    """``net`` in a :class:`Model` with the battery's fixed batch size."""
    return Model(net, batch_size=BATCH_SIZE)


def tiny_images(n: int = SAMPLES, seed: int = 1) -> Tensor:
    """``n`` random images ``(n, 3, 16, 16)`` in ``[0, 1)``, drawn from ``seed``."""
    return torch.rand(n, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def tiny_rows(n: int = SAMPLES, seed: int = 1) -> Tensor:
    """``n`` random tabular rows ``(n, 8)``, drawn from ``seed``."""
    return torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))


def tiny_masks(n: int = SAMPLES, seed: int = 2) -> Tensor:
    """Boolean object masks ``(n, 1, 16, 16)``: a 6x6 box per image at a position from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, SIZE - 6, (n, 2), generator=generator)
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    for i, (row, col) in enumerate(corners.tolist()):
        masks[i, 0, row : row + 6, col : col + 6] = True
    return masks


def tiny_row_masks(n: int = SAMPLES) -> Tensor:
    """Boolean relevant-column masks ``(n, 8)``: the first three columns."""
    masks = torch.zeros(n, FEATURES, dtype=torch.bool)
    masks[:, :3] = True
    return masks


# --------------------------------------------------------------------------------------------
# Running checks


def _named(owner: str, check_name: str, function: Check) -> Check:
    """``function`` raising AssertionError naming ``owner`` and the check when it fails."""

    def run() -> None:
        try:
            function()
        except AssertionError as error:
            raise AssertionError(f"{owner} failed the check {check_name!r}: {error}") from error
        except Exception as error:
            raise AssertionError(
                f"{owner} failed the check {check_name!r}: it raised "
                f"{type(error).__name__}: {error}"
            ) from error

    run.__name__ = run.__qualname__ = check_name
    return run


def _message_pattern(name: str, owner: str, constraints: ConstraintList) -> str:
    return (
        re.escape(f"The {name!r} parameter of {owner} must be {describe(constraints)}.")
        + r" Got .+ instead\."
    )


def _assert_message_form(
    error: InvalidParameterError, name: str, owner: str, constraints: ConstraintList
) -> None:
    message = str(error)
    pattern = _message_pattern(name, owner, constraints)
    assert re.fullmatch(pattern, message, flags=re.DOTALL), (
        f"an invalid {name!r} raised InvalidParameterError with the message {message!r}, not "
        f"the one form 'The {name!r} parameter of {owner} must be {describe(constraints)}. "
        "Got ... instead.'"
    )


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    return bool(a == b)


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return set(a) == set(b) and all(_same_value(a[key], b[key]) for key in a)


State = tuple[list[bool], list[bool], int, dict[str, Tensor]]
"""Training flags, ``requires_grad`` flags, hook count and a copy of the weights."""


def module_state(net: nn.Module) -> State:
    """What a method or metric must leave as it found it in a module."""
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in net.modules()
    )
    return (
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        hooks,
        {k: v.clone() for k, v in net.state_dict().items()},
    )


def assert_same_state(net: nn.Module, before: State) -> None:
    """Raise AssertionError naming what changed in ``net`` since ``before``."""
    training, grads, hooks, weights = module_state(net)
    assert training == before[0], f"training flags changed from {before[0]} to {training}"
    assert grads == before[1], f"requires_grad flags changed from {before[1]} to {grads}"
    assert hooks == before[2], f"{hooks} hooks are registered where there were {before[2]}"
    for key, value in weights.items():
        assert torch.equal(value, before[3][key]), f"the weights {key!r} changed"


def _assert_close(a: Tensor, b: Tensor, what: str) -> None:
    try:
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL, equal_nan=True)
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from None


# --------------------------------------------------------------------------------------------
# The method battery


@dataclass(frozen=True)
class _MethodCase:
    cls: type[Method]
    params: dict[str, Any]

    def method(self, **extra: Any) -> Method:
        return self.cls(**{**self.params, **extra})

    def explain(self, model: ModelLike, inputs: Tensor, **extra: Any) -> Explanation:
        return self.method(**extra).explain(model, inputs)

    @property
    def fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.cls) if f.init]


def _method_shape(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(tiny_model()), images)
    channels = CHANNELS if case.method().config().get("reduce") == "none" else 1
    expected = (SAMPLES, channels, SIZE, SIZE)
    got = tuple(result.attributions.shape)
    assert got == expected, f"attributions of shape {got} for images {tuple(images.shape)}"


def _method_device(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(tiny_model()), images)
    assert result.attributions.device == images.device, (
        f"attributions on {result.attributions.device}, inputs on {images.device}"
    )
    if torch.cuda.is_available():  # model on the GPU, inputs on the CPU: results come home
        result = case.explain(batched(tiny_model().cuda()), images)
        assert result.attributions.device == images.device, (
            f"with the model on cuda, attributions on {result.attributions.device}, inputs on "
            f"{images.device}"
        )
        assert result.target is None or result.target.device == images.device


def _method_dtype(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(tiny_model()), images)
    assert result.attributions.dtype == images.dtype, (
        f"attributions of dtype {result.attributions.dtype} for inputs of {images.dtype}"
    )


def _method_finite(case: _MethodCase) -> None:
    result = case.explain(batched(tiny_model()), tiny_images())
    assert bool(torch.isfinite(result.attributions).all()), "attributions hold NaN or inf"


def _method_record(case: _MethodCase) -> None:
    net, images = tiny_model(), tiny_images()
    result = case.explain(batched(net), images)
    assert result.method == case.cls.name, (
        f"the explanation records the method {result.method!r}, not {case.cls.name!r}"
    )
    assert _same_config(result.config, case.method().config()), (
        f"the explanation records the config {dict(result.config)}, not the method's "
        f"{case.method().config()}"
    )
    assert result.target is not None, "the explanation records no target"
    with torch.no_grad():
        predicted = net(images).argmax(1)
    assert torch.equal(result.target, predicted), (
        f"the recorded target {result.target.tolist()} is not the predicted class "
        f"{predicted.tolist()}"
    )
    assert result.cost.forward > 0 and result.cost.seconds > 0, (
        f"the recorded cost {result.cost} counts no forward pass or no time"
    )


def _method_sample_independence(case: _MethodCase) -> None:
    net, images = tiny_model(), tiny_images()
    together = case.explain(batched(net), images).attributions
    for i in range(images.shape[0]):
        alone = case.explain(batched(net), images[i : i + 1]).attributions
        _assert_close(alone[0], together[i], f"explain(x)[{i}] != explain(x[{i}:{i + 1}])[0]")


def _method_batch_size_invariance(case: _MethodCase) -> None:
    net, images = tiny_model(), tiny_images()
    one = case.explain(Model(net, batch_size=1), images).attributions
    seven = case.explain(Model(net, batch_size=7), images).attributions
    _assert_close(one, seven, "Model(net, batch_size=1) and batch_size=7 give different maps")


def _method_deterministic(case: _MethodCase) -> None:
    net, images = tiny_model(), tiny_images()
    first = case.explain(batched(net), images).attributions
    second = case.explain(batched(net), images).attributions
    assert torch.equal(first, second), "two runs with the same parameters (seed) differ"


def _method_seed_changes_output(case: _MethodCase) -> None:
    net, images = tiny_model(), tiny_images()
    first = case.explain(batched(net), images, seed=1).attributions
    second = case.explain(batched(net), images, seed=2).attributions
    assert not torch.equal(first, second), "seed=1 and seed=2 give the same maps"


def _method_input_not_mutated(case: _MethodCase) -> None:
    images = tiny_images()
    copy = images.clone()
    case.explain(batched(tiny_model()), images)
    assert torch.equal(images, copy), "explain changed its inputs in place"


def _method_model_left_as_found(case: _MethodCase) -> None:
    net = tiny_model()
    net.train()
    net.head.weight.requires_grad_(False)
    before = module_state(net)
    case.explain(net, tiny_images())
    assert_same_state(net, before)


def _method_model_restored_after_exception(case: _MethodCase) -> None:
    failing = FailsAfter(tiny_model(), n=3).train()
    before = module_state(failing)
    try:
        case.explain(Model(failing, batch_size=2), tiny_images())
    except ModelError as error:
        assert "simulated failure" in str(error), (
            f"the model's error became a ModelError that does not say why: {error}"
        )
    else:
        raise AssertionError("a model raising on its third call did not raise ModelError")
    assert_same_state(failing, before)
    assert failing.training, "the model was left in eval mode"


def _method_constraints_declared(case: _MethodCase) -> None:
    declared = case.cls.constraints()
    missing = [name for name in case.fields if name not in declared]
    assert not missing, (
        f"the parameters {missing} of {case.cls.__name__} have no declared constraints; declare "
        "them in parameter_constraints"
    )
    unknown = sorted(set(declared) - set(case.fields))
    assert not unknown, f"constraints are declared for {unknown}, which are not init fields"


def _method_invalid_parameters_rejected(case: _MethodCase) -> None:
    owner = case.cls.__name__
    for name, constraints in case.cls.constraints().items():
        if name not in case.fields:
            continue
        bad = invalid_value(constraints)
        if bad is NO_INVALID_VALUE:
            continue
        try:
            case.method(**{name: bad})
        except InvalidParameterError as error:
            _assert_message_form(error, name, owner, constraints)
        else:
            raise AssertionError(
                f"{owner}({name}={bad!r}) was accepted, but {bad!r} is not {describe(constraints)}"
            )


_METHOD_CHECKS: tuple[tuple[str, Callable[[_MethodCase], None]], ...] = (
    ("constraints_declared", _method_constraints_declared),
    ("invalid_parameters_rejected", _method_invalid_parameters_rejected),
    ("shape", _method_shape),
    ("device", _method_device),
    ("dtype", _method_dtype),
    ("finite", _method_finite),
    ("record", _method_record),
    ("sample_independence", _method_sample_independence),
    ("batch_size_invariance", _method_batch_size_invariance),
    ("deterministic", _method_deterministic),
    ("seed_changes_output", _method_seed_changes_output),
    ("input_not_mutated", _method_input_not_mutated),
    ("model_left_as_found", _method_model_left_as_found),
    ("model_restored_after_exception", _method_model_restored_after_exception),
)


def _method_class(name_or_class: str | type[Method]) -> type[Method]:
    if isinstance(name_or_class, str):
        return METHODS[name_or_class]
    if not (isinstance(name_or_class, type) and issubclass(name_or_class, Method)):
        raise InvalidParameterError(
            "check_method takes a registered method's name or a Method subclass. Got "
            f"{name_or_class!r} instead."
        )
    return name_or_class


def method_checks(
    name_or_class: str | type[Method], params: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, Check]]:
    """Each check of the method battery as ``(check name, callable)``; nothing runs yet.

    Parameters
    ----------
    name_or_class : str or Method subclass
        A registered method's name, or a class (registered or not).
    params : mapping, optional
        Parameters the method is made with in every check (cheap settings).

    Checks: ``constraints_declared`` (every init field has constraints),
    ``invalid_parameters_rejected`` (the value :func:`~faithmap.core.constraints.invalid_value`
    makes for each field raises InvalidParameterError in the one message form), ``shape``,
    ``device``, ``dtype``, ``finite``, ``record`` (method name, config, predicted target,
    cost), ``sample_independence`` (``explain(x)[i] == explain(x[i:i+1])[0]``),
    ``batch_size_invariance``, ``deterministic`` (same parameters, same maps),
    ``seed_changes_output`` (methods whose :attr:`~faithmap.core.method.Method.uses_seed`),
    ``input_not_mutated``,
    ``model_left_as_found`` and ``model_restored_after_exception`` (training flags,
    ``requires_grad``, hooks and weights).
    """
    cls = _method_class(name_or_class)
    case = _MethodCase(cls, dict(params or {}))
    owner = f"method {cls.name!r} ({cls.__name__})"
    for check_name, check in _METHOD_CHECKS:
        if check_name == "seed_changes_output" and not case.method().uses_seed:
            continue
        yield check_name, _named(owner, check_name, _bind(check, case))


def check_method(
    name_or_class: str | type[Method], params: Mapping[str, Any] | None = None
) -> None:
    """Run the whole method battery (see :func:`method_checks`); AssertionError on a failure."""
    for _, check in method_checks(name_or_class, params):
        check()


def _bind(function: Callable[[Any], None], case: Any) -> Check:
    def bound() -> None:
        function(case)

    return bound


# --------------------------------------------------------------------------------------------
# The metric battery


@dataclass(frozen=True)
class _Data:
    """One set of battery data: a model factory, inputs, an explanation of them, masks."""

    kind: str
    make_model: Callable[[], nn.Module]
    inputs: Tensor
    explanation: Explanation
    masks: Tensor

    def fresh(self) -> _Data:
        """Copies of the tensors, so that a check can compare against the originals."""
        explanation = dataclasses.replace(
            self.explanation, attributions=self.explanation.attributions.clone()
        )
        return dataclasses.replace(
            self, inputs=self.inputs.clone(), explanation=explanation, masks=self.masks.clone()
        )


def _image_data() -> _Data:
    net, images = tiny_model(), tiny_images()
    explanation = make_method(EXPLAINING_METHOD).explain(batched(net), images)
    return _Data("images", tiny_model, images, explanation, tiny_masks())


def _tabular_data() -> _Data:
    net, rows = tiny_mlp(), tiny_rows()
    explanation = make_method(EXPLAINING_METHOD).explain(batched(net), rows)
    return _Data("tabular", tiny_mlp, rows, explanation, tiny_row_masks())


@dataclass
class _MetricCase:
    spec: MetricSpec
    params: dict[str, Any]
    _data: list[_Data] = field(default_factory=list)

    def run(self, data: _Data, model: ModelLike | None = None, **extra: Any) -> MetricResult:
        return self.spec.run(
            batched(data.make_model()) if model is None else model,
            data.inputs,
            data.explanation,
            masks=data.masks,
            **{**self.params, **extra},
        )

    def data(self) -> _Data:
        """Fresh battery data the metric accepts: images, else tabular rows (on ShapeError)."""
        if not self._data:
            images = _image_data()
            try:
                self.run(images.fresh())
            except ShapeError as image_error:
                rows = _tabular_data()
                try:
                    self.run(rows.fresh())
                except ShapeError:
                    raise image_error from None
                self._data.append(rows)
            else:
                self._data.append(images)
        return self._data[0].fresh()


def _metric_result(case: _MetricCase) -> None:
    data = case.data()
    result = case.run(data)
    assert isinstance(result, MetricResult), f"it returned {type(result).__name__}"
    assert result.metric == case.spec.name, f"the result names the metric {result.metric!r}"
    n = data.inputs.shape[0]
    assert tuple(result.values.shape) == (n,), (
        f"values of shape {tuple(result.values.shape)} for {n} samples"
    )
    assert result.values.is_floating_point(), f"values of dtype {result.values.dtype}"
    if case.spec.higher_is_better is not None:
        assert result.higher_is_better == case.spec.higher_is_better, (
            f"the result says higher_is_better={result.higher_is_better}, the registration "
            f"{case.spec.higher_is_better}"
        )


def _metric_batch_size_invariance(case: _MetricCase) -> None:
    data = case.data()
    net = data.make_model()
    one = case.run(data, Model(net, batch_size=1)).values
    all_at_once = case.run(data, Model(net, batch_size=data.inputs.shape[0])).values
    _assert_close(
        one, all_at_once, "Model(net, batch_size=1) and batch_size=N give different values"
    )


def _metric_deterministic(case: _MetricCase) -> None:
    data = case.data()
    net = data.make_model()
    first = case.run(data, batched(net)).values
    second = case.run(data, batched(net)).values
    assert torch.equal(first.isnan(), second.isnan()) and torch.equal(
        first.nan_to_num(), second.nan_to_num()
    ), f"two runs with the same parameters give {first.tolist()} and {second.tolist()}"


def _metric_inputs_not_mutated(case: _MetricCase) -> None:
    data = case.data()
    copy = data.inputs.clone()
    case.run(data)
    assert torch.equal(data.inputs, copy), "the metric changed its inputs in place"


def _metric_explanation_not_mutated(case: _MetricCase) -> None:
    data = case.data()
    copy = data.explanation.attributions.clone()
    case.run(data)
    assert torch.equal(data.explanation.attributions, copy), (
        "the metric changed the explanation's attributions in place"
    )


def _metric_masks_not_mutated(case: _MetricCase) -> None:
    data = case.data()
    copy = data.masks.clone()
    case.run(data)
    assert torch.equal(data.masks, copy), "the metric changed the masks in place"


def _metric_device(case: _MetricCase) -> None:
    data = case.data()
    home = data.inputs.device
    result = case.run(data)
    assert result.values.device == home, f"values on {result.values.device}, inputs on {home}"
    if torch.cuda.is_available() and case.spec.needs_model:
        result = case.run(data, batched(data.make_model().cuda()))
        assert result.values.device == home, (
            f"with the model on cuda, values on {result.values.device}, inputs on {home}"
        )


def _metric_model_left_as_found(case: _MetricCase) -> None:
    data = case.data()
    net = data.make_model()
    net.train()
    before = module_state(net)
    case.run(data, net)
    assert_same_state(net, before)


def _metric_constant_model(case: _MetricCase) -> None:
    data = case.data()
    documented = case.spec.constant_model
    result = case.run(data, batched(ConstantNet(channels=data.inputs.shape[1])))
    values = result.values.double()
    if documented == "score":
        expected = 1.0 / CLASSES
        what = f"the constant model's target score {expected}"
    else:
        assert isinstance(documented, float | int)
        expected = float(documented)
        what = f"the documented {expected}"
    if math.isnan(expected):
        assert bool(values.isnan().all()), (
            f"values {values.tolist()} under a constant model, not NaN"
        )
    else:
        assert bool(values.isfinite().all()) and bool(
            ((values - expected).abs() <= 1e-4 + 1e-4 * abs(expected)).all()
        ), f"values {values.tolist()} under a constant model, not {what}"


def _metric_parameters_declared(case: _MetricCase) -> None:
    missing = [p for p in case.spec.parameters() if p not in case.spec.constraints]
    assert not missing, (
        f"the keyword parameters {missing} of metric {case.spec.name!r} have no declared "
        "constraints; pass them to register_metric(constraints=...)"
    )


def _metric_invalid_parameters_rejected(case: _MetricCase) -> None:
    for name, constraints in case.spec.constraints.items():
        bad = invalid_value(constraints)
        if bad is NO_INVALID_VALUE:
            continue
        data = case.data()
        try:
            case.run(data, **{name: bad})
        except InvalidParameterError as error:
            _assert_message_form(error, name, case.spec.name, constraints)
        else:
            raise AssertionError(
                f"{case.spec.name}({name}={bad!r}) was accepted, but {bad!r} is not "
                f"{describe(constraints)}"
            )


_METRIC_CHECKS: tuple[tuple[str, Callable[[_MetricCase], None]], ...] = (
    ("parameters_declared", _metric_parameters_declared),
    ("invalid_parameters_rejected", _metric_invalid_parameters_rejected),
    ("result", _metric_result),
    ("device", _metric_device),
    ("deterministic", _metric_deterministic),
    ("batch_size_invariance", _metric_batch_size_invariance),
    ("inputs_not_mutated", _metric_inputs_not_mutated),
    ("explanation_not_mutated", _metric_explanation_not_mutated),
    ("masks_not_mutated", _metric_masks_not_mutated),
    ("model_left_as_found", _metric_model_left_as_found),
    ("constant_model", _metric_constant_model),
)


def _applies(check_name: str, spec: MetricSpec) -> bool:
    if check_name in ("batch_size_invariance", "model_left_as_found"):
        return spec.needs_model
    if check_name == "inputs_not_mutated":
        return "inputs" in spec.arguments
    if check_name == "masks_not_mutated":
        return spec.needs_masks
    if check_name == "constant_model":
        return spec.constant_model is not None
    return True


def metric_checks(
    name_or_spec: str | MetricSpec, params: Mapping[str, Any] | None = None
) -> Iterator[tuple[str, Check]]:
    """Each check of the metric battery as ``(check name, callable)``; nothing runs yet.

    Parameters
    ----------
    name_or_spec : str or MetricSpec
        A registered metric's name, or a spec (``MetricSpec.of(name, function, constraints)``,
        registered or not).
    params : mapping, optional
        Keyword parameters the metric is run with in every check (cheap settings).

    The metric scores an explanation by the registered ``"saliency"`` method (so metrics that
    explain again rebuild it from the explanation) of the battery's images, with box masks; a
    metric that refuses images with a ShapeError gets tabular rows instead. Checks:
    ``parameters_declared`` (every keyword parameter has constraints),
    ``invalid_parameters_rejected`` (the value each parameter's constraints make invalid raises
    InvalidParameterError in the one message form naming the metric), ``result`` (a
    MetricResult of ``(N,)`` floating values named after the metric), ``device`` (values on
    the inputs' device), ``deterministic``; for metrics that run the model
    ``batch_size_invariance`` (``Model(net, batch_size=1)`` and ``batch_size=N`` agree) and
    ``model_left_as_found``; ``inputs_not_mutated``, ``explanation_not_mutated`` and
    ``masks_not_mutated`` for what the metric reads; and ``constant_model`` (a model whose
    output ignores its input gives the registered ``constant_model`` value; ``"score"`` is
    its target score, ``1 / classes`` in the battery) unless the registration says ``None``.
    """
    spec = METRICS[name_or_spec] if isinstance(name_or_spec, str) else name_or_spec
    case = _MetricCase(spec, dict(params or {}))
    owner = f"metric {spec.name!r}"
    for check_name, check in _METRIC_CHECKS:
        if _applies(check_name, spec):
            yield check_name, _named(owner, check_name, _bind(check, case))


def check_metric(name_or_spec: str | MetricSpec, params: Mapping[str, Any] | None = None) -> None:
    """Run the whole metric battery (see :func:`metric_checks`); AssertionError on a failure."""
    for _, check in metric_checks(name_or_spec, params):
        check()


# --------------------------------------------------------------------------------------------
# Registration


def faithmap_method_classes(package: str = "faithmap") -> list[type[Method]]:
    """Every concrete Method subclass defined in ``package``, each of its modules imported.

    Modules that need an optional package that is not installed (ImportError) are passed
    over, and ``__main__`` modules are never imported.
    """
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue
    found: list[type[Method]] = []
    pending: list[type[Method]] = list(Method.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        in_package = cls.__module__ == package or cls.__module__.startswith(f"{package}.")
        if in_package and not inspect.isabstract(cls) and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def check_registered_methods(package: str = "faithmap") -> None:
    """AssertionError unless every concrete Method subclass defined in ``package`` is registered."""
    registered = set(METHODS.values())
    missing = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in faithmap_method_classes(package)
        if cls not in registered
    ]
    assert not missing, (
        f"concrete Method subclasses not registered: {missing}; decorate each with "
        "@register_method(name), or make it abstract"
    )
