"""The base of every attribution method: validation, device, target, state and cost handling.

A method is a frozen, keyword-only dataclass holding configuration only; :meth:`Method.explain`
is its one job. Subclasses implement :meth:`Method.attribute` on inputs already checked, moved to
the model's device, with the target resolved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from torch import Tensor, nn

from faithmap.errors import InvalidParameterError
from faithmap.explanation import Explanation
from faithmap.model import Model
from faithmap.targets import Target, TargetLike
from faithmap.validation import check_inputs

Reduce = Literal["sum", "mean", "max", "abs_sum", "none"]
REDUCTIONS = ("sum", "mean", "max", "abs_sum", "none")


def as_model(model: Model | nn.Module | Callable[[Tensor], Any]) -> Model:
    """``model`` itself if it is a :class:`Model`, else a new one wrapping it."""
    return model if isinstance(model, Model) else Model(model)


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
    image_only: ClassVar[bool] = False
    """Whether the method needs images ``(N, C, H, W)``."""

    def check_choice(self, field_name: str, choices: tuple[str, ...]) -> None:
        """Raise unless the field ``field_name`` holds one of ``choices``."""
        value = getattr(self, field_name)
        if value not in choices:
            raise InvalidParameterError(
                f"The {field_name!r} parameter of {type(self).__name__} must be one of "
                f"{', '.join(map(repr, choices))}. Got {value!r} instead."
            )

    def config(self) -> dict[str, Any]:
        """The method's parameters as a plain dict (the record the benchmark stores)."""
        return asdict(self)

    def explain(
        self,
        model: Model | nn.Module | Callable[[Tensor], Any],
        inputs: Tensor,
        target: TargetLike = None,
    ) -> Explanation:
        """Attributions of ``target`` for each input.

        Parameters
        ----------
        model : Model, nn.Module or callable
            The model to explain; it is left exactly as it was given.
        inputs : Tensor
            One batch, batch first; images are ``(N, C, H, W)``.
        target : None, int, sequence or tensor of ints, or callable
            The output to explain (``None``: each sample's predicted class).
        """
        wrapped = as_model(model)
        checked = check_inputs(inputs, type(self).__name__, image=self.image_only)
        device = wrapped.device or checked.device
        on_device = checked.detach().to(device)
        with wrapped.ledger.track() as tracker:
            resolved = wrapped.target(on_device, target)
            result = self.attribute(wrapped, on_device, resolved)
        if isinstance(result, Tensor):
            result = Attribution(result)
        home = checked.device
        return Explanation(
            attributions=result.attributions.detach().to(home),
            method=self.name,
            config=self.config(),
            target=None if resolved.classes is None else resolved.classes.to(home),
            cost=tracker.cost,
            ranking=None if result.ranking is None else result.ranking.to(home),
            curves={name: curve.detach().to(home) for name, curve in result.curves.items()},
        )

    @abstractmethod
    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor | Attribution:
        """The attributions of checked inputs on the model's device (with extras, if any)."""
