"""Look-up of methods and metrics by name.

A method registers itself with ``@register("name")`` when its module is imported; the
command line, the benchmark and :func:`faithmap.explain` all go through :func:`get`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from faithmap.errors import InvalidParameterError

T = TypeVar("T", bound=type)

_METHODS: dict[str, type] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator adding an attribution method to the registry under ``name``."""

    def decorate(cls: T) -> T:
        if name in _METHODS and _METHODS[name] is not cls:
            raise InvalidParameterError(
                f"The method name {name!r} is already registered by {_METHODS[name].__name__}. "
                "Choose another name."
            )
        _METHODS[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def available() -> list[str]:
    """Names of every registered method, sorted."""
    _load_builtin_methods()
    return sorted(_METHODS)


def method_class(name: str) -> type:
    """The class registered under ``name``; a clear error listing valid names otherwise."""
    _load_builtin_methods()
    if name not in _METHODS:
        raise InvalidParameterError(
            f"Unknown method {name!r}. Valid names are: {', '.join(sorted(_METHODS))}."
        )
    return _METHODS[name]


def describe(name: str) -> str:
    """The first line of a registered method's docstring."""
    doc = method_class(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _load_builtin_methods() -> None:
    import faithmap.methods  # noqa: F401  (importing registers every built-in method)
