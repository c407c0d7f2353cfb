"""The metric battery: :func:`check_metric` and :func:`metric_checks`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.constraints import NO_INVALID_VALUE, describe, invalid_value
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, MetricSpec
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import METRICS, make_method
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.testing.data import (
    CLASSES,
    EXPLAINING_METHOD,
    Check,
    ConstantNet,
    batched,
    tiny_images,
    tiny_masks,
    tiny_mlp,
    tiny_model,
    tiny_row_masks,
    tiny_rows,
)
from faithmap.testing.running import (
    _assert_close,
    _assert_message_form,
    _bind,
    _named,
    assert_same_state,
    module_state,
)


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
