"""The method battery: :func:`check_method` and :func:`method_checks`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.constraints import NO_INVALID_VALUE, describe, invalid_value
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import METHODS
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.testing.data import (
    CHANNELS,
    SAMPLES,
    SIZE,
    Check,
    FailsAfter,
    TinyCNN,
    TinyViT,
    batched,
    model_for,
    tiny_images,
)
from faithmap.testing.running import (
    _assert_close,
    _assert_message_form,
    _bind,
    _named,
    _same_config,
    assert_same_state,
    module_state,
)


@dataclass(frozen=True)
class _MethodCase:
    cls: type[Method]
    params: dict[str, Any]

    def method(self, **extra: Any) -> Method:
        return self.cls(**{**self.params, **extra})

    def model(self) -> TinyCNN | TinyViT:
        """The battery's model for this method (a tiny ViT for attention methods)."""
        return model_for(self.cls)

    def explain(self, model: ModelLike, inputs: Tensor, **extra: Any) -> Explanation:
        return self.method(**extra).explain(model, inputs)

    @property
    def fields(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.cls) if f.init]


def _method_shape(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(case.model()), images)
    channels = CHANNELS if case.method().config().get("reduce") == "none" else 1
    expected = (SAMPLES, channels, SIZE, SIZE)
    got = tuple(result.attributions.shape)
    assert got == expected, f"attributions of shape {got} for images {tuple(images.shape)}"


def _method_device(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(case.model()), images)
    assert result.attributions.device == images.device, (
        f"attributions on {result.attributions.device}, inputs on {images.device}"
    )
    if torch.cuda.is_available():  # model on the GPU, inputs on the CPU: results come home
        result = case.explain(batched(case.model().cuda()), images)
        assert result.attributions.device == images.device, (
            f"with the model on cuda, attributions on {result.attributions.device}, inputs on "
            f"{images.device}"
        )
        assert result.target is None or result.target.device == images.device


def _method_dtype(case: _MethodCase) -> None:
    images = tiny_images()
    result = case.explain(batched(case.model()), images)
    assert result.attributions.dtype == images.dtype, (
        f"attributions of dtype {result.attributions.dtype} for inputs of {images.dtype}"
    )


def _method_finite(case: _MethodCase) -> None:
    result = case.explain(batched(case.model()), tiny_images())
    assert bool(torch.isfinite(result.attributions).all()), "attributions hold NaN or inf"


def _method_record(case: _MethodCase) -> None:
    net, images = case.model(), tiny_images()
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
    net, images = case.model(), tiny_images()
    together = case.explain(batched(net), images).attributions
    for i in range(images.shape[0]):
        alone = case.explain(batched(net), images[i : i + 1]).attributions
        _assert_close(alone[0], together[i], f"explain(x)[{i}] != explain(x[{i}:{i + 1}])[0]")


def _method_batch_size_invariance(case: _MethodCase) -> None:
    net, images = case.model(), tiny_images()
    one = case.explain(Model(net, batch_size=1), images).attributions
    seven = case.explain(Model(net, batch_size=7), images).attributions
    _assert_close(one, seven, "Model(net, batch_size=1) and batch_size=7 give different maps")


def _method_deterministic(case: _MethodCase) -> None:
    net, images = case.model(), tiny_images()
    first = case.explain(batched(net), images).attributions
    second = case.explain(batched(net), images).attributions
    assert torch.equal(first, second), "two runs with the same parameters (seed) differ"


def _method_seed_changes_output(case: _MethodCase) -> None:
    net, images = case.model(), tiny_images()
    first = case.explain(batched(net), images, seed=1).attributions
    second = case.explain(batched(net), images, seed=2).attributions
    assert not torch.equal(first, second), "seed=1 and seed=2 give the same maps"


def _method_input_not_mutated(case: _MethodCase) -> None:
    images = tiny_images()
    copy = images.clone()
    case.explain(batched(case.model()), images)
    assert torch.equal(images, copy), "explain changed its inputs in place"


def _method_model_left_as_found(case: _MethodCase) -> None:
    net = case.model()
    net.train()
    net.head.weight.requires_grad_(False)
    before = module_state(net)
    case.explain(net, tiny_images())
    assert_same_state(net, before)


def _method_model_restored_after_exception(case: _MethodCase) -> None:
    failing = FailsAfter(case.model(), n=3).train()
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
