"""The base of every attribution method: validation, device, target, state and cost handling.

A method is a frozen, keyword-only dataclass holding configuration only; :meth:`Method.explain`
is its one job, a template (zennit's ``Attributor.__call__`` -> ``forward``): it checks the
inputs, moves them to the model's device, resolves the target and tracks the cost, then calls
:meth:`Method.attribute`, which a subclass implements on inputs already checked. A subclass
declares its parameters' constraints as data in ``parameter_constraints`` (see
:mod:`faithmap.core.constraints`); the base checks them once, when the method is made, and then
calls :meth:`Method.check` for rules that tie several parameters together.

Parameters whose good value depends on the input's size (a window, a patch grid) default to
``None``, "scaled to the input": :meth:`Method.resolve` returns the method with them set for the
inputs at hand, and the explanation's ``config`` records the values used. Every map an explanation
returns passes one check here: a sample whose map is constant (or all zero) ranks nothing, so
:meth:`Method.explain` warns (:class:`~faithmap.errors.ConstantMapWarning`) and names the
parameter to change (:meth:`Method.constant_map_advice`).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import (
    STRING,
    ConstraintList,
    Constraints,
    InstanceOf,
    options,
    validate_params,
)
from faithmap.core.explanation import Explanation
from faithmap.core.model import Model, ModelLike
from faithmap.core.targets import Target, TargetLike
from faithmap.core.validation import check_inputs
from faithmap.errors import ConstantMapWarning, FaithmapError, ModelError, ShapeError

Reduce = Literal["sum", "mean", "max", "abs_sum", "none"]
REDUCE = options(get_args(Reduce))


def reduce_channels(attributions: Tensor, how: str) -> Tensor:
    """Collapse the channel axis of image attributions ``(N, C, H, W)`` to ``(N, 1, H, W)``."""
    if attributions.dim() != 4 or how == "none":
        return attributions
    if how == "sum":
        return attributions.sum(1, keepdim=True)
    if how == "mean":
        return attributions.mean(1, keepdim=True)
    if how == "max":
        return attributions.amax(1, keepdim=True)
    return attributions.abs().sum(1, keepdim=True)


@dataclass(frozen=True)
class Attribution:
    """What :meth:`Method.attribute` returns when a method produces more than a map.

    ``ranking`` is ``(N, R)`` region indices, most important first; ``curves`` maps a name to
    ``(N, steps + 1)`` scores recorded while explaining (see :class:`Explanation`).
    """

    attributions: Tensor
    ranking: Tensor | None = None
    curves: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Method(ABC):
    """An attribution method; see the module docstring."""

    name: ClassVar[str]
    """The registered name; an unregistered subclass is named after its class."""
    image_only: ClassVar[bool] = False
    """Whether the method needs images ``(N, C, H, W)``."""
    needs_attention: ClassVar[bool] = False
    """Whether the method reads a transformer's attention, so models without it are refused
    (the contract battery runs such a method on a tiny vision transformer)."""
    parameter_constraints: ClassVar[Constraints] = {}
    """The constraints of the fields this class declares (merged with its bases')."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__  # until registered: a subclass never borrows its base's name

    @classmethod
    def constraints(cls) -> Constraints:
        """Every field's constraints, this class's overriding its bases'."""
        merged: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("parameter_constraints", {}))
        return merged

    def __post_init__(self) -> None:
        validate_params(self.params(), self.constraints(), type(self).__name__)
        self.check()

    def check(self) -> None:  # noqa: B027  (a hook: most methods have no such rule)
        """Rules that tie parameters together, once each is valid on its own (none by default)."""

    def params(self) -> dict[str, Any]:
        """Every init field by name, its value itself (what the constraints are checked on)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    @property
    def uses_seed(self) -> bool:
        """Whether the method draws at random, so its ``seed`` changes the output."""
        return "seed" in self.params()

    def config(self) -> dict[str, Any]:
        """The method's parameters by name (the record the benchmark stores).

        Values are the fields themselves, not copies: a :class:`~faithmap.Regions` or a tensor
        stays what it is (``dataclasses.asdict`` would turn a dataclass into a dict and deep-copy
        every tensor). A subclass may record a parameter in another form (GradientSHAP records
        its background set by shape and hash); :meth:`params` always holds the values.
        """
        return self.params()

    def resolve(self, inputs: Tensor) -> Self:
        """This method with its automatic parameters set for ``inputs`` (checked, on the device).

        A parameter left ``None`` that means "scaled to the input" (a window, a patch grid) gets
        the value this batch's size calls for; the result is what :meth:`explain` runs and what
        the explanation's ``config`` records. A method without such parameters returns itself.
        """
        return self

    def constant_map_advice(self, inputs: Tensor) -> str:
        """What to change when this method returns a constant map for ``inputs`` (one sentence or
        two, naming the parameter), for :class:`~faithmap.errors.ConstantMapWarning`.

        The default names ``regions`` and a softmax ``activation`` when the method has them; a
        method with another resolution parameter (a window, a grid) says so itself.
        """
        params = self.params()
        advice = []
        if "regions" in params and inputs.dim() == 2:
            advice.append(
                "Each column is a feature here, and removing any one of them alone leaves the "
                f"output as it was: try another 'fill' (now {params.get('fill')!r}) or group "
                "columns with 'regions'."
            )
        elif "regions" in params:
            advice.append(
                f"Pass more, smaller regions (regions={params['regions']!r} now; for example "
                "regions='patches:K' with a smaller K), so that removing one changes the output."
            )
        if params.get("activation") == "softmax":
            advice.append("A saturated softmax is flat: try activation='logits'.")
        advice.append("Check that the model's target output depends on the input.")
        return " ".join(advice)

    def explain(
        self,
        model: ModelLike,
        inputs: Tensor,
        target: TargetLike = None,
    ) -> Explanation:
        """Attributions of ``target`` for each input.

        Parameters
        ----------
        model : Model, nn.Module or callable
            The model to explain; it is left exactly as it was given.
        inputs : Tensor
            One batch, batch first; images are ``(N, C, H, W)``; 1-D signals ``(N, C, T)``
            (time series, audio) are explained as images of height one, maps ``(N, 1, T)``.
        target : None, int, sequence or tensor of ints, callable, or one callable per sample
            The output to explain (``None``: each sample's predicted class); a callable is
            kept on the explanation, so metrics score the same output.
        """
        if not (isinstance(inputs, Tensor) and inputs.dim() == 3):
            return self._explain(Model.wrap(model), inputs, target, signals=False)
        try:  # 1-D signals (N, C, T) are explained as images of height one
            return self._explain(
                Model.wrap(model).for_signal_images(), inputs.unsqueeze(2), target, signals=True
            )
        except ModelError as err:
            if err.__cause__ is None or isinstance(err.__cause__, FaithmapError):
                raise  # not the model refusing the shape (a method's own refusal, say)
            raise ShapeError(
                f"Inputs of shape {tuple(inputs.shape)} are read as 1-D signals (N, C, T), and "
                f"the model refused them: {err} If they are one image (C, H, W), add a batch "
                "dimension with x.unsqueeze(0)."
            ) from err

    def _explain(
        self, wrapped: Model, inputs: Tensor, target: TargetLike, *, signals: bool
    ) -> Explanation:
        """:meth:`explain` on a wrapped model (a signal view for 1-D signals)."""
        checked = check_inputs(inputs, type(self).__name__, image=self.image_only)
        device = wrapped.device or checked.device
        on_device = checked.detach().to(device)
        method = self.resolve(on_device)
        with wrapped.ledger.track() as tracker:
            resolved = wrapped.target(on_device, target)
            result = method.attribute(wrapped, on_device, resolved)
        if isinstance(result, Tensor):
            result = Attribution(result)
        activation = method.params().get("activation")
        probabilities = activation == "softmax" or (
            activation == "logits" and wrapped.outputs_kind == "probabilities"
        )
        _refuse_non_finite(method, result.attributions)
        warn_constant_maps(method, result.attributions, on_device)
        if probabilities:
            warn_saturated(method, result.attributions, wrapped, on_device, resolved)
        home = checked.device
        attributions = result.attributions.detach()
        if signals and attributions.dim() == 4 and attributions.shape[2] == 1:
            attributions = attributions.squeeze(2)
        return Explanation(
            attributions=attributions.to(home),
            method=self.name,
            config=method.config(),
            target=None if resolved.classes is None else resolved.classes.to(home),
            score=resolved.function,
            model=wrapped.record(),
            cost=tracker.cost,
            ranking=None if result.ranking is None else result.ranking.to(home),
            curves={name: curve.detach().to(home) for name, curve in result.curves.items()},
            params=self.params(),
        )

    @abstractmethod
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor | Attribution:
        """The attributions of checked inputs on the model's device (with extras, if any)."""


_QUIET: ContextVar[bool] = ContextVar("faithmap_quiet_constant_maps", default=False)


@contextmanager
def quiet_constant_maps() -> Iterator[None]:
    """Within this block, :meth:`Method.explain` issues no :class:`ConstantMapWarning`.

    For code that explains on purpose where flat maps are an expected outcome (the sanity
    checks re-explain with randomised layers); a user's own explanation always warns.
    """
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def constant_samples(attributions: Tensor) -> Tensor:
    """``(N,)`` whether each sample's map holds one value only (up to float rounding).

    A map of fewer than two values is never called constant; NaN makes a map not constant.
    """
    flat = attributions.detach().flatten(1)
    if flat.shape[1] < 2:
        return torch.zeros(flat.shape[0], dtype=torch.bool, device=flat.device)
    if not flat.is_floating_point():
        flat = flat.double()
    high, low = flat.amax(1), flat.amin(1)
    rounding = 8 * torch.finfo(flat.dtype).eps * torch.maximum(high.abs(), low.abs())
    return (high - low) <= rounding


def _refuse_non_finite(method: Method, attributions: Tensor) -> None:
    """A :class:`ModelError` naming the samples whose map holds NaN or infinity."""
    finite = torch.isfinite(attributions.detach()).flatten(1).all(1)
    if bool(finite.all()):
        return
    samples = (~finite).nonzero().flatten().tolist()
    raise ModelError(
        f"{method.name} produced NaN or infinite attributions for sample(s) "
        f"{', '.join(map(str, samples[:8]))}{' ...' if len(samples) > 8 else ''}: the model "
        "returned NaN or infinity for them or for their perturbed copies (or its gradients "
        "overflowed). Check the model's outputs on these inputs (and the declared "
        "preprocessing); faithmap does not score such maps."
    )


def warn_constant_maps(method: Method, attributions: Tensor, inputs: Tensor) -> None:
    """Issue a :class:`ConstantMapWarning` naming ``method``, the samples whose map is constant
    and :meth:`Method.constant_map_advice`; nothing when every map varies."""
    if _QUIET.get() or attributions.dim() < 2:
        return
    constant = constant_samples(attributions)
    if not bool(constant.any()):
        return
    samples = constant.nonzero().flatten().tolist()
    shown = ", ".join(map(str, samples[:8])) + (", ..." if len(samples) > 8 else "")
    values = attributions.detach().flatten(1)[constant, 0]
    what = "an all-zero map" if bool((values == 0).all()) else "a constant map"
    size = "x".join(map(str, inputs.shape[2:])) if inputs.dim() > 2 else str(inputs.shape[-1])
    warnings.warn(
        f"{method.name} returned {what} for {len(samples)} of {attributions.shape[0]} samples "
        f"(sample {shown}; inputs of size {size}): it ranks nothing, so every metric scores it "
        f"like a random map. {method.constant_map_advice(inputs)}",
        ConstantMapWarning,
        stacklevel=3,
    )


SATURATED = 1e-4
"""A softmax-readout map whose largest magnitude stays below this changed no probability by
more than 1e-4: the model's probabilities saturate where it is sure."""


def warn_saturated(
    method: Method, attributions: Tensor, model: Model, inputs: Tensor, target: Target
) -> None:
    """A :class:`ConstantMapWarning` when a map read from probabilities barely moves because
    the target's probability is saturated (above 1 - 1e-4 or below 1e-4): float32 cannot rank
    such changes. Costs one forward pass of the flagged samples, only when there are any."""
    if _QUIET.get() or target.classes is None or attributions.dim() < 2:
        return
    largest = attributions.detach().flatten(1).abs().amax(1).to(inputs.device)
    tiny = (largest < SATURATED) & (largest > 0)
    if not bool(tiny.any()):
        return
    index = tiny.nonzero().flatten()
    probabilities = model.outputs(inputs[index], activation="softmax")
    if probabilities.dim() != 2:
        return
    chosen = probabilities.gather(1, target.classes[index].unsqueeze(1)).squeeze(1)
    saturated = index[(chosen > 1 - SATURATED) | (chosen < SATURATED)].tolist()
    if not saturated:
        return
    warnings.warn(
        f"{method.name} read from probabilities changed the target probability by less than "
        f"{SATURATED:g} anywhere for {len(saturated)} of {attributions.shape[0]} samples (sample "
        f"{', '.join(map(str, saturated[:8]))}), whose probability is saturated: the map is "
        "mostly float rounding. Pass activation='log_odds', which does not saturate.",
        ConstantMapWarning,
        stacklevel=4,
    )


METHOD: ConstraintList = [None, STRING, InstanceOf((Method,), "a Method")]
"""The constraint of a metric's ``method`` parameter: a registered name or a Method (``None``:
the explanation's own)."""
