"""The batteries of faithmap.testing catch real defects, and pass a method or metric that keeps
the contract."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.metric import MetricResult, MetricSpec, prepare, read_map
from faithmap.core.model import Model
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.testing import (
    ConstantNet,
    check_method,
    check_metric,
    check_registered_methods,
    method_checks,
    metric_checks,
    tiny_images,
)

# --------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True, kw_only=True)
class Good(Method):
    """Channel sum of |input| times ``scale``: keeps the whole contract."""

    parameter_constraints: ClassVar[Constraints] = {
        "scale": [Interval(float, 0.0, closed="neither")]
    }
    scale: float = 1.0

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.abs().sum(1, keepdim=True) * self.scale


@dataclass(frozen=True, kw_only=True)
class MutatesInput(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.add_(1.0).sum(1, keepdim=True)


@dataclass(frozen=True, kw_only=True)
class DependsOnBatch(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return (inputs - inputs.mean(0, keepdim=True)).sum(1, keepdim=True)


@dataclass(frozen=True, kw_only=True)
class DependsOnBatchSize(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.sum(1, keepdim=True) * float(model.batch_size or 1)


@dataclass(frozen=True, kw_only=True)
class Undeclared(Good):
    extra: int = 0


@dataclass(frozen=True, kw_only=True)
class Unvalidated(Good):
    def __post_init__(self) -> None:
        """Skips the base's validation: declared constraints are not enforced."""


@dataclass(frozen=True, kw_only=True)
class OwnMessage(Good):
    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise InvalidParameterError("scale must be positive")
        super().__post_init__()


@dataclass(frozen=True, kw_only=True)
class IgnoresSeed(Good):
    parameter_constraints: ClassVar[Constraints] = {"seed": [Interval(int)]}
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class Unseeded(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return torch.rand(inputs.shape[0], 1, *inputs.shape[2:])


@dataclass(frozen=True, kw_only=True)
class LeavesHook(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        assert isinstance(model.module, torch.nn.Module)
        model.module.register_forward_hook(lambda *args: None)
        return inputs.sum(1, keepdim=True)


@dataclass(frozen=True, kw_only=True)
class WrongDtype(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.sum(1, keepdim=True).double()


@dataclass(frozen=True, kw_only=True)
class KeepsChannels(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.clone()


@dataclass(frozen=True, kw_only=True)
class NotFinite(Good):
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.sum(1, keepdim=True) / 0.0


def _run_method_check(cls: type[Method], check_name: str) -> None:
    checks = dict(method_checks(cls))
    checks[check_name]()


def test_a_method_that_keeps_the_contract_passes() -> None:
    check_method(Good)
    check_method(Good, {"scale": 2.0})


def test_the_method_checks_are_named() -> None:
    names = [name for name, _ in method_checks(Good)]
    assert names == [
        "constraints_declared",
        "invalid_parameters_rejected",
        "shape",
        "device",
        "dtype",
        "finite",
        "record",
        "sample_independence",
        "batch_size_invariance",
        "deterministic",
        "input_not_mutated",
        "model_left_as_found",
        "model_restored_after_exception",
    ]
    assert "seed_changes_output" in dict(method_checks(IgnoresSeed))


@pytest.mark.parametrize(
    "cls, check_name",
    [
        (MutatesInput, "input_not_mutated"),
        (DependsOnBatch, "sample_independence"),
        (DependsOnBatchSize, "batch_size_invariance"),
        (Undeclared, "constraints_declared"),
        (Unvalidated, "invalid_parameters_rejected"),
        (OwnMessage, "invalid_parameters_rejected"),
        (IgnoresSeed, "seed_changes_output"),
        (Unseeded, "deterministic"),
        (LeavesHook, "model_left_as_found"),
        (WrongDtype, "dtype"),
        (KeepsChannels, "shape"),
        (NotFinite, "finite"),
    ],
)
def test_a_broken_method_fails_the_relevant_check(cls: type[Method], check_name: str) -> None:
    with pytest.raises(AssertionError, match=f"{cls.__name__}.*failed the check '{check_name}'"):
        _run_method_check(cls, check_name)


def test_check_method_stops_at_the_first_failing_check() -> None:
    with pytest.raises(AssertionError, match="failed the check 'constraints_declared'"):
        check_method(Undeclared)


def test_check_method_refuses_what_is_not_a_method() -> None:
    with pytest.raises(InvalidParameterError, match="Method subclass"):
        check_method(int)  # type: ignore[arg-type]


def test_a_check_passes_for_a_registered_name() -> None:
    checks = dict(method_checks("saliency"))
    checks["input_not_mutated"]()


# --------------------------------------------------------------------------------------------
# Metrics


def total(explanation: object, *, power: int = 1) -> MetricResult:
    """Sum of |map| ** power per sample."""
    maps = read_map(explanation, "total")
    values = maps.abs().pow(power).flatten(1).sum(1)
    return MetricResult(metric="total", values=values, higher_is_better=True)


def mutating(explanation: object, *, power: int = 1) -> MetricResult:
    """Like total, but negates the map in place."""
    maps = read_map(explanation, "mutating")
    if isinstance(explanation, Tensor):
        explanation.neg_()
    else:
        explanation.attributions.neg_()  # type: ignore[attr-defined]
    return MetricResult(metric="mutating", values=maps.flatten(1).sum(1), higher_is_better=True)


def score(model: Any, inputs: Tensor, explanation: object, *, scale: float = 1.0) -> MetricResult:
    """The target's softmax score (a constant model gives its constant score)."""
    prepared = prepare("score", model, inputs, explanation, None, image=True)
    probabilities = prepared.model.outputs(prepared.x, activation="softmax")
    target = prepared.model.target(prepared.x, prepared.target)
    rows = torch.arange(prepared.x.shape[0], device=prepared.x.device)
    values = target.select(probabilities, rows) * scale
    return MetricResult(metric="score", values=values.to(prepared.home), higher_is_better=True)


def batch_dependent(
    model: Any, inputs: Tensor, explanation: object, *, scale: float = 1.0
) -> MetricResult:
    """Depends on the model's batch size."""
    prepared = prepare("batch_dependent", model, inputs, explanation, None, image=True)
    logits = prepared.model.outputs(prepared.x)
    values = logits.amax(1) * float(prepared.model.batch_size or 1) * scale
    return MetricResult(
        metric="batch_dependent", values=values.to(prepared.home), higher_is_better=True
    )


POWER: Constraints = {"power": [Interval(int, 1)]}
SCALE: Constraints = {"scale": [Interval(float, 0.0, closed="neither")]}


def test_a_metric_that_keeps_the_contract_passes() -> None:
    check_metric(MetricSpec.of("total", total, POWER, higher_is_better=True))
    check_metric(
        MetricSpec.of("score", score, SCALE, higher_is_better=True, constant_model="score")
    )


def test_the_metric_checks_follow_what_the_metric_reads() -> None:
    of_map = [name for name, _ in metric_checks(MetricSpec.of("total", total, POWER))]
    assert of_map == [
        "parameters_declared",
        "invalid_parameters_rejected",
        "result",
        "device",
        "deterministic",
        "explanation_not_mutated",
    ]
    spec = MetricSpec.of("score", score, SCALE, constant_model=0.25)
    of_model = [name for name, _ in metric_checks(spec)]
    assert {"batch_size_invariance", "inputs_not_mutated", "model_left_as_found"} <= set(of_model)
    assert "constant_model" in of_model
    assert "constant_model" not in dict(metric_checks(MetricSpec.of("score", score, SCALE)))


def _run_metric_check(spec: MetricSpec, check_name: str) -> None:
    dict(metric_checks(spec))[check_name]()


@pytest.mark.parametrize(
    "spec, check_name",
    [
        (MetricSpec.of("total", total, {}), "parameters_declared"),
        (MetricSpec.of("mutating", mutating, POWER), "explanation_not_mutated"),
        (MetricSpec.of("batch_dependent", batch_dependent, SCALE), "batch_size_invariance"),
        (MetricSpec.of("score", score, SCALE, constant_model=0.0), "constant_model"),
        (MetricSpec.of("score", score, SCALE, constant_model=float("nan")), "constant_model"),
        (MetricSpec.of("total", total, POWER, higher_is_better=False), "result"),
    ],
    ids=["undeclared", "mutates", "batch", "constant-0", "constant-nan", "direction"],
)
def test_a_broken_metric_fails_the_relevant_check(spec: MetricSpec, check_name: str) -> None:
    with pytest.raises(
        AssertionError, match=f"metric '{spec.name}' failed the check '{check_name}'"
    ):
        _run_metric_check(spec, check_name)


def test_the_constant_model_ignores_its_input() -> None:
    net = ConstantNet()
    images = tiny_images()
    out = net(images)
    assert torch.equal(out, net(torch.zeros_like(images)))
    assert torch.allclose(out, torch.full_like(out, 0.25))
    assert torch.allclose(out.softmax(1), out)


# --------------------------------------------------------------------------------------------
# Registration


def test_every_registered_method_check_finds_an_unregistered_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fakeplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "extra.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass

            from faithmap.core.method import Method


            @dataclass(frozen=True, kw_only=True)
            class Forgotten(Method):
                def attribute(self, model, inputs, target):
                    return inputs


            @dataclass(frozen=True, kw_only=True)
            class Abstract(Method):
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError, match=r"fakeplugin\.extra\.Forgotten'\]"):
        check_registered_methods("fakeplugin")
