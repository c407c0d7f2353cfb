"""The metric template: one result type, one registered record, one set-up every metric shares.

A metric is a plain function registered with
:func:`~faithmap.core.registry.register_metric`; its leading parameters are named from
``model``, ``inputs``, ``explanation`` and ``masks`` and the rest are keyword-only, declared with
constraints that are checked before it runs. A metric that runs the model starts with
:func:`prepare`, which checks the inputs and the attribution map, wraps the model, moves the
inputs to its device once and settles which target is scored (and by which rule); a metric of
the map alone starts with :func:`read_map` (and :func:`read_masks` for ground truth). It
returns a :class:`MetricResult` (or a subclass with its extras).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, validate_params
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation, attribution_map
from faithmap.core.model import Model, ModelLike
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_inputs
from faithmap.errors import InvalidParameterError, ShapeError


@dataclass(frozen=True, kw_only=True)
class MetricResult:
    """A metric's value for each sample, with every choice that changes it.

    Attributes
    ----------
    metric : str
        The metric's registered name.
    values : Tensor
        ``(N,)`` one value per sample, on the inputs' device (NaN where undefined, e.g. a
        localisation metric on a sample with an empty mask).
    higher_is_better : bool
        Whether a larger value means a better explanation.
    choices : dict
        Every choice that changes the number: target rule, softmax or logits, fill, unit, steps,
        seed, ...
    cost : Cost
        Model passes and seconds the metric spent (zero passes for metrics of the map alone).
    target : Tensor or None
        The class scored for each sample, ``None`` when the metric reads no class or the
        target is a callable.
    """

    metric: str
    values: Tensor
    higher_is_better: bool
    choices: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)
    target: Tensor | None = None

    @property
    def mean(self) -> float:
        """Mean over the samples, ignoring NaN (samples where the metric is undefined)."""
        return float(self.values.double().nanmean())


MetricFunction = TypeVar("MetricFunction", bound=Callable[..., MetricResult])
ConstantModelValue = float | Literal["score"]
"""What a metric gives every sample when the model's output never changes: a number (``nan``
where the metric is undefined), or ``"score"``, the model's constant target score."""
ARGUMENTS = ("model", "inputs", "explanation", "masks")
"""The names a metric's leading parameters may take."""


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: its function, the data it reads and its declared constraints."""

    name: str
    function: Callable[..., MetricResult]
    arguments: tuple[str, ...]
    constraints: Constraints
    higher_is_better: bool | None = None
    """``None`` when it depends on a parameter (a curve's order)."""
    constant_model: ConstantModelValue | None = None
    """The documented value under a model whose output ignores its input (``None``: the metric
    does not run the model, or a constant model does not fix its value)."""

    @classmethod
    def of(
        cls,
        name: str,
        function: Callable[..., MetricResult],
        constraints: Constraints,
        higher_is_better: bool | None = None,
        constant_model: ConstantModelValue | None = None,
    ) -> MetricSpec:
        """The record of ``function``; an error unless its signature follows the template."""
        parameters = inspect.signature(function).parameters.values()
        leading = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        keywords = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
        unknown = [argument for argument in leading if argument not in ARGUMENTS]
        if not leading or unknown:
            raise InvalidParameterError(
                f"Metric {name!r} must take leading parameters named from {ARGUMENTS}, then "
                f"keyword-only ones. Got {leading}."
            )
        undeclared = sorted(set(constraints) - keywords)
        if undeclared:
            raise InvalidParameterError(
                f"Metric {name!r} declares constraints for {undeclared}, which are not among its "
                f"keyword-only parameters {sorted(keywords)}."
            )
        return cls(name, function, tuple(leading), constraints, higher_is_better, constant_model)

    @property
    def qualname(self) -> str:
        """Where the function is defined, to tell a re-import from a name clash."""
        return f"{self.function.__module__}.{self.function.__qualname__}"

    @property
    def needs_masks(self) -> bool:
        """Whether the metric scores against ground-truth masks."""
        return "masks" in self.arguments

    @property
    def needs_model(self) -> bool:
        """Whether the metric runs the model."""
        return "model" in self.arguments

    def parameters(self) -> list[str]:
        """The names of the metric's keyword-only parameters."""
        return [
            p.name
            for p in inspect.signature(self.function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]

    def required(self) -> list[str]:
        """The names of the keyword-only parameters that have no default."""
        return [
            p.name
            for p in inspect.signature(self.function).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        ]

    def check(self, params: Mapping[str, Any]) -> None:
        """Raise for an unknown parameter name, a missing one that has no default, or a value
        its constraints refuse."""
        known = self.parameters()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidParameterError(
                f"The metric {self.name!r} has no parameter {', '.join(map(repr, unknown))}. "
                f"Its parameters are: {', '.join(known)}."
            )
        missing = [name for name in self.required() if name not in params]
        if missing:
            example = ", ".join(f"{name!r}: ..." for name in missing)
            raise InvalidParameterError(
                f"The metric {self.name!r} needs {', '.join(map(repr, missing))}, which has no "
                f"default. Pass it with the metric's parameters: evaluate(..., params="
                f"{{{self.name!r}: {{{example}}}}}), BenchConfig(metric_params=...) likewise, or "
                f"{self.name}(..., {missing[0]}=...) when calling the metric itself."
            )
        validate_params(params, self.constraints, self.name)

    @property
    def validating(self) -> Callable[..., MetricResult]:
        """The function with its keyword parameters checked before each call."""
        function = self.function

        @functools.wraps(function)
        def checked(*args: Any, **params: Any) -> MetricResult:
            self.check(params)
            return function(*args, **params)

        return checked

    def run(
        self,
        model: ModelLike | None,
        inputs: Tensor | None,
        explanation: object,
        *,
        masks: Tensor | None = None,
        **params: Any,
    ) -> MetricResult:
        """Run the metric, giving it the arguments it reads and ``params``.

        Raises
        ------
        InvalidParameterError
            For unknown or invalid parameters, or when the metric needs ground-truth ``masks``
            and none were given.
        """
        if self.needs_masks and masks is None:
            raise InvalidParameterError(
                f"The metric {self.name!r} scores explanations against ground-truth masks, but "
                "no masks were given. Pass masks=(N, 1, H, W) boolean object masks, or drop "
                "this metric."
            )
        self.check(params)
        given = {"model": model, "inputs": inputs, "explanation": explanation, "masks": masks}
        return self.function(*(given[argument] for argument in self.arguments), **params)


TargetRule = Literal["explained", "predicted", "given"]


@dataclass(frozen=True)
class Prepared:
    """What a metric that runs the model works on, checked and in place.

    Attributes
    ----------
    model : Model
        The model, wrapped once.
    inputs : Tensor
        The checked inputs, where the caller keeps them (results go back to ``inputs.device``).
    x : Tensor
        The same inputs detached, on the model's device.
    attributions : Tensor
        The explanation's map, float, on the model's device.
    target : TargetLike
        What to score: the given target, else the explanation's (its classes, or the callable
        it explained), else ``None`` (the predicted class, for class-score outputs only).
    rule : {"explained", "predicted", "given"}
        How the target was chosen, recorded in the result's choices.
    """

    model: Model
    inputs: Tensor
    x: Tensor
    attributions: Tensor
    target: TargetLike
    rule: TargetRule

    @property
    def home(self) -> torch.device:
        """The device results are returned on: the caller's inputs'."""
        return self.inputs.device


def check_map_shape(attributions: Tensor, inputs: Tensor, owner: str) -> None:
    """Raise unless the attributions are ``(N, 1 or C, H, W)`` for images ``(N, C, H, W)``."""
    expected = (inputs.shape[0], *inputs.shape[2:])
    got = attributions.shape[0], *attributions.shape[-2:]
    if attributions.dim() not in (3, 4) or tuple(got) != expected:
        raise ShapeError(
            f"The attributions for {owner} must have shape (N, 1 or C, H, W) matching the inputs "
            f"{tuple(inputs.shape)}. Got {tuple(attributions.shape)} instead."
        )


def prepare(
    owner: str,
    model: ModelLike,
    inputs: Tensor,
    explanation: object,
    target: TargetLike,
    *,
    image: bool = False,
) -> Prepared:
    """The shared set-up of a metric that runs the model (see :class:`Prepared`).

    With ``image=True`` the inputs must be images ``(N, C, H, W)`` and the map ``(N, 1 or C, H,
    W)`` of the same size, or 1-D signals ``(N, C, T)`` with maps ``(N, 1 or C, T)``, scored
    as images of height one (:meth:`Model.for_signal_images`); otherwise the map is only read.
    """
    wrapped = Model.wrap(model)
    attributions = attribution_map(explanation)
    if image and isinstance(inputs, Tensor) and inputs.dim() == 3:  # signals (N, C, T)
        wrapped = wrapped.for_signal_images()
        inputs = inputs.unsqueeze(2)
        attributions = attributions.unsqueeze(-2) if attributions.dim() == 3 else attributions
    checked = check_inputs(inputs, owner, image=image)
    if image:
        check_map_shape(attributions, checked, owner)
    finite = torch.isfinite(attributions.detach()).flatten(1).all(1)
    if not bool(finite.all()):
        samples = (~finite).nonzero().flatten().tolist()
        raise ShapeError(
            f"The attributions given to {owner} hold NaN or infinity for sample(s) "
            f"{', '.join(map(str, samples[:8]))}; a metric cannot rank them. Explain those "
            "samples again, or drop them."
        )
    device = wrapped.device or checked.device
    rule: TargetRule
    if target is None and isinstance(explanation, Explanation) and explanation.score is not None:
        target, rule = explanation.score, "explained"
    elif target is None and isinstance(explanation, Explanation) and explanation.target is not None:
        target, rule = explanation.target, "explained"
    else:
        rule = "predicted" if target is None else "given"
    return Prepared(
        model=wrapped,
        inputs=checked,
        x=checked.detach().to(device),
        attributions=attributions.detach().to(device),
        target=target,
        rule=rule,
    )


EMPTY_MASK = "nan"
"""What a sample with an empty ground-truth mask scores: NaN, skipped by the means."""


def home_device(explanation: object) -> torch.device:
    """The device the results of a metric of ``explanation`` alone go back to."""
    return attribution_map(explanation).device


def read_map(explanation: object, owner: str) -> Tensor:
    """Signed maps ``(N, H, W)`` of an image explanation (channels summed), finite, float."""
    attributions = attribution_map(explanation).detach()
    if attributions.dim() not in (3, 4):
        raise ShapeError(
            f"The attributions for {owner} must have shape (N, 1 or C, H, W) or (N, H, W). "
            f"Got {tuple(attributions.shape)} instead."
        )
    maps = attributions.sum(1) if attributions.dim() == 4 else attributions
    if not bool(torch.isfinite(maps).all()):
        raise ShapeError(
            f"The attributions for {owner} contain NaN or inf values. Check the method's output."
        )
    return maps.float()


def read_masks(masks: object, maps: Tensor, owner: str) -> Tensor:
    """Boolean ground-truth masks ``(N, H, W)`` for ``maps``, on the maps' device."""
    if not isinstance(masks, Tensor):
        raise ShapeError(
            f"The masks of {owner} must be a boolean tensor (N, 1, H, W). Got "
            f"{type(masks).__name__} instead."
        )
    flat = masks[:, 0] if masks.dim() == 4 and masks.shape[1] == 1 else masks
    if flat.shape != maps.shape:
        raise ShapeError(
            f"The masks of {owner} must have shape (N, 1, H, W) with the attribution map's N, "
            f"height and width (row, column order), {(maps.shape[0], 1, *maps.shape[1:])}. Got "
            f"{tuple(masks.shape)} instead."
        )
    if flat.dtype != torch.bool:
        if bool(((flat != 0) & (flat != 1)).any()):
            raise ShapeError(
                f"The masks of {owner} must be boolean (or hold only 0 and 1). Got values other "
                f"than 0 and 1 in a {flat.dtype} tensor; threshold them first, e.g. masks > 0.5."
            )
        flat = flat != 0
    return flat.to(maps.device)
