"""Parameter constraints declared as data, checked in one place.

A method declares ``parameter_constraints = {"steps": [Interval(int, 1)], ...}`` and a metric
passes the same kind of mapping to :func:`~faithmap.core.registry.register_metric`; each value is
a list of constraints of which one must hold (``None`` in the list allows ``None``).
:func:`validate_params` raises the one message form, scikit-learn's: ``The 'steps' parameter of
insertion must be an int >= 1. Got 0 instead.`` Each constraint can also produce a value that
breaks it (:meth:`Constraint.invalid_value`), which the contract batteries in
:mod:`faithmap.testing` use to check that every declared parameter is really validated.

References
----------
The idea follows scikit-learn's ``_parameter_constraints`` and ``validate_params``
(``sklearn/utils/_param_validation.py``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from faithmap.errors import InvalidParameterError

NO_INVALID_VALUE = object()
"""Returned by :meth:`Constraint.invalid_value` when every value of a plain type satisfies it."""


class Constraint(ABC):
    """One condition a parameter value may satisfy."""

    @abstractmethod
    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` meets the condition."""

    @abstractmethod
    def __str__(self) -> str:
        """The condition in words, as it reads after "must be"."""

    def invalid_value(self) -> Any:
        """A value that breaks this constraint (:data:`NO_INVALID_VALUE` if none is known)."""
        return NO_INVALID_VALUE


@dataclass(frozen=True)
class Interval(Constraint):
    """An int, or a finite real number (``float``: ints accepted), within optional bounds.

    ``closed`` says which bounds are included: ``"both"``, ``"left"``, ``"right"`` or
    ``"neither"``. Booleans are never numbers here.
    """

    kind: type[int] | type[float]
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        low_open = self.closed in ("right", "neither")
        high_open = self.closed in ("left", "neither")
        if self.low is not None and (value < self.low or (low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (high_open and value == self.high))
        )

    def __str__(self) -> str:
        noun = "an int" if self.kind is int else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>=' if self.closed in ('both', 'left') else '>'} {self.low}")
        if self.high is not None:
            parts.append(f"{'<=' if self.closed in ('both', 'right') else '<'} {self.high}")
        return " ".join([noun, " and ".join(parts)]) if parts else noun

    def invalid_value(self) -> Any:
        if self.low is not None:
            return self.low - 1 if self.kind is int else self.low - 1.0
        if self.high is not None:
            return self.high + 1 if self.kind is int else self.high + 1.0
        return "not a number"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of values (the choices of a ``Literal`` type)."""

    values: tuple[Any, ...]

    def is_satisfied_by(self, value: Any) -> bool:
        return any(isinstance(value, type(option)) and value == option for option in self.values)

    def __str__(self) -> str:
        return f"one of {', '.join(map(repr, self.values))}"

    def invalid_value(self) -> Any:
        return "not-an-option"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of one of ``types``; ``description`` names them for the message."""

    types: tuple[type, ...]
    description: str

    def is_satisfied_by(self, value: Any) -> bool:
        if bool not in self.types and isinstance(value, bool):
            return False
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return self.description

    def invalid_value(self) -> Any:
        return object()


@dataclass(frozen=True)
class Satisfies(Constraint):
    """Whatever ``check`` accepts; ``description`` says what that is, ``invalid`` breaks it."""

    check: Callable[[Any], bool]
    description: str
    invalid: Any = NO_INVALID_VALUE

    def is_satisfied_by(self, value: Any) -> bool:
        return bool(self.check(value))

    def __str__(self) -> str:
        return self.description

    def invalid_value(self) -> Any:
        return self.invalid


ConstraintList = Sequence[Constraint | None]
Constraints = Mapping[str, ConstraintList]
"""Parameter name -> the constraints of which one must hold (``None``: the value None)."""

CALLABLE = Satisfies(callable, "a callable", invalid=3)
STRING = InstanceOf((str,), "a str")
BOOLEAN = InstanceOf((bool,), "a bool")
SEED = Interval(int)
"""A seed: any int."""


def options(values: Iterable[Any]) -> Options:
    """An :class:`Options` constraint over ``values`` (e.g. ``typing.get_args(Reduce)``)."""
    return Options(tuple(values))


def describe(constraints: ConstraintList) -> str:
    """The constraints in words: ``"an int >= 1 or None"``."""
    words = [str(c) for c in constraints if c is not None]
    if any(c is None for c in constraints):
        words.append("None")
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def satisfies(value: Any, constraints: ConstraintList) -> bool:
    """Whether ``value`` meets at least one of ``constraints``."""
    return any(
        value is None if constraint is None else constraint.is_satisfied_by(value)
        for constraint in constraints
    )


def check_param(value: Any, name: str, owner: str, constraints: ConstraintList) -> None:
    """Raise the one message form unless ``value`` meets one of ``constraints``."""
    if not satisfies(value, constraints):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {describe(constraints)}. "
            f"Got {value!r} instead."
        )


def validate_params(values: Mapping[str, Any], constraints: Constraints, owner: str) -> None:
    """Check each of ``values`` that has declared constraints; raise on the first that fails."""
    for name, value in values.items():
        if name in constraints:
            check_param(value, name, owner, constraints[name])


def invalid_value(constraints: ConstraintList) -> Any:
    """A value that breaks every one of ``constraints``, or :data:`NO_INVALID_VALUE`."""
    for constraint in constraints:
        if constraint is None:
            continue
        candidate = constraint.invalid_value()
        if candidate is not NO_INVALID_VALUE and not satisfies(candidate, constraints):
            return candidate
    for candidate in (object(), -(10**9), "not-an-option", 3):
        if not satisfies(candidate, constraints):
            return candidate
    return NO_INVALID_VALUE
