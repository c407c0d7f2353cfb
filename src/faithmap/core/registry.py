"""Methods and metrics by name: one registry kind, two registries.

:data:`METHODS` maps a name to a :class:`~faithmap.core.method.Method` class and :data:`METRICS`
to a :class:`~faithmap.core.metric.MetricSpec`. Both are read-only mappings with the same
vocabulary: ``register(name)`` (a decorator), ``names()``, ``describe(name)`` and
``registry[name]``, which for an unknown name raises :class:`~faithmap.errors.UnknownNameError`
listing the valid ones. The command line, the benchmark, :func:`faithmap.explain` and
:func:`faithmap.evaluate` all look things up here. A module registers what it defines when it
is imported; a registry imports the packages of faithmap's own entries (by name, like plugin
entry points) the first time it is read, so the engine never imports them itself.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, cast

from faithmap.core.constraints import Constraints
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.metric import ConstantModelValue, MetricFunction, MetricSpec
from faithmap.errors import InvalidParameterError, UnknownNameError

Entry = TypeVar("Entry")


class Registry(Mapping[str, Entry], Generic[Entry]):
    """Entries of one ``kind`` ("method", "metric") by name.

    Parameters
    ----------
    kind : str
        What an entry is, for messages.
    summary : callable
        The one-line description of an entry.
    builtins : tuple of str
        The modules that register faithmap's own entries, imported on first read.
    """

    def __init__(
        self, kind: str, summary: Callable[[Entry], str], builtins: tuple[str, ...]
    ) -> None:
        self.kind = kind
        self._summary = summary
        self._builtins = builtins
        self._loaded = False
        self._entries: dict[str, Entry] = {}

    @property
    def entries(self) -> dict[str, Entry]:
        """Every entry by name, the built-ins loaded."""
        if not self._loaded:
            self._loaded = True
            for module in self._builtins:
                importlib.import_module(module)
        return self._entries

    def __getitem__(self, name: str) -> Entry:
        if name not in self.entries:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}. Valid names are: {', '.join(self.names())}."
            )
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self.entries)

    def describe(self, name: str) -> str:
        """The first line of the entry's documentation."""
        return self._summary(self[name])

    def add(self, name: str, entry: Entry, *, same: Callable[[Entry, Entry], bool]) -> None:
        """Register ``entry`` under ``name``; an error if another entry holds the name."""
        if name in self._entries and not same(self._entries[name], entry):
            raise InvalidParameterError(
                f"The {self.kind} name {name!r} is already registered. Choose another name."
            )
        self._entries[name] = entry


def _first_line(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return text.splitlines()[0] if text else ""


METHODS: Registry[type[Method]] = Registry(
    "method", lambda cls: _first_line(cls.__doc__), builtins=("faithmap.methods",)
)
"""Every registered attribution method class by name."""

METRICS: Registry[MetricSpec] = Registry(
    "metric",
    lambda spec: _first_line(spec.function.__doc__),
    builtins=("faithmap.metrics", "faithmap.tabular"),
)
"""Every registered metric by name."""

M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator adding a :class:`Method` subclass to :data:`METHODS` under ``name``."""

    def decorate(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise InvalidParameterError(
                f"register_method({name!r}) decorates Method subclasses. Got {cls!r} instead."
            )
        METHODS.add(name, cls, same=lambda old, new: old.__qualname__ == new.__qualname__)
        cls.name = name
        return cls

    return decorate


def register_preset(name: str, base: M, summary: str, reference: str, /, **defaults: Any) -> M:
    """Register under ``name`` a preset of the method ``base``: the same method, other defaults.

    The preset is a frozen, keyword-only dataclass subclass of ``base`` whose only difference is
    the defaults of the fields named in ``defaults`` (so ``dataclasses.fields`` and the method's
    record show them, and every field can still be set), with a generated docstring: ``summary``
    (the first line, the one ``METHODS.describe`` shows), then a paragraph naming the preset
    values and ``reference``, the paper that proposed them. Returns the preset class, named
    after ``name`` in CamelCase.

    Raises
    ------
    InvalidParameterError
        If ``base`` is not a :class:`Method` dataclass or ``defaults`` name a field it lacks.
    """
    if not (isinstance(base, type) and issubclass(base, Method) and dataclasses.is_dataclass(base)):
        raise InvalidParameterError(
            f"register_preset({name!r}) makes presets of Method dataclasses. Got {base!r} instead."
        )
    known = {f.name: f for f in dataclasses.fields(base) if f.init}
    unknown = sorted(set(defaults) - set(known))
    if unknown:
        raise InvalidParameterError(
            f"The preset {name!r} of {base.__name__} sets unknown parameters "
            f"({', '.join(map(repr, unknown))}). Its parameters are: {', '.join(sorted(known))}."
        )
    class_name = "".join(part.capitalize() for part in name.split("_"))
    values = ", ".join(f"``{key}={value!r}``" for key, value in defaults.items())
    target = f":class:`~{base.__module__}.{base.__qualname__}`"
    paragraph = (
        f"A preset of {target}: the same method with the defaults {values}, as in {reference}. "
        f"Every parameter can still be set; see {target} for what each means."
    )
    doc = f"{summary}\n\n{textwrap.fill(paragraph, 96)}\n"
    preset = dataclasses.make_dataclass(
        class_name,
        [(key, known[key].type, _default(value)) for key, value in defaults.items()],
        bases=(base,),
        namespace={"__doc__": doc, "__module__": base.__module__},
        frozen=True,
        kw_only=True,
    )
    return register_method(name)(cast(M, preset))


def _default(value: Any) -> Any:
    """A dataclass field defaulting to ``value`` (a fresh copy per instance if unhashable)."""
    if getattr(type(value), "__hash__", None) is None:
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value))
    return dataclasses.field(default=value)


def register_metric(
    name: str,
    *,
    constraints: Constraints | None = None,
    higher_is_better: bool | None = None,
    constant_model: ConstantModelValue | None = None,
) -> Callable[[MetricFunction], MetricFunction]:
    """Function decorator adding a metric to :data:`METRICS` under ``name``.

    The function's leading parameters (before the keyword-only ones) are named from
    ``model``, ``inputs``, ``explanation`` and ``masks``; ``constraints`` declare its
    keyword parameters (see :mod:`faithmap.core.constraints`) and are checked on every call,
    before the function runs. The decorated function is returned validating, so a direct call
    and a call by name check the same way. ``higher_is_better`` and ``constant_model`` (the
    value under a model that ignores its input) are recorded for the contract battery.
    """

    def decorate(function: MetricFunction) -> MetricFunction:
        spec = MetricSpec.of(name, function, constraints or {}, higher_is_better, constant_model)
        METRICS.add(name, spec, same=lambda old, new: old.qualname == new.qualname)
        return cast(MetricFunction, spec.validating)

    return decorate


def make_method(name: str, params: Mapping[str, Any] | None = None) -> Method:
    """The registered method ``name`` configured with ``params``; unknown parameters named."""
    cls = METHODS[name]
    fields = sorted(field.name for field in dataclasses.fields(cls) if field.init)
    unknown = sorted(set(params or {}) - set(fields))
    if unknown:
        raise InvalidParameterError(
            f"Method {name!r} got an unexpected parameter ({', '.join(map(repr, unknown))}). "
            f"Its parameters are: {', '.join(fields)}."
        )
    return cls(**dict(params or {}))


def method_of(explanation: object, method: Method | str | None, owner: str) -> Method:
    """The method to explain again with: ``method`` if given, else the one ``explanation`` records.

    Metrics that re-explain (sensitivity, Lipschitz, the sanity checks) rebuild the method
    from the explanation's name and parameters (its recorded config when it was loaded).

    Raises
    ------
    InvalidParameterError
        If ``method`` is None and ``explanation`` is a bare tensor, which records no method, or
        records a method that is not registered.
    """
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return make_method(method)
    if isinstance(explanation, Explanation):
        if explanation.method not in METHODS:
            raise InvalidParameterError(
                f"{owner} explains again with the explanation's method {explanation.method!r}, "
                "which is not registered. Pass the method object: method=YourMethod(...)."
            )
        return make_method(explanation.method, explanation.params or explanation.config)
    raise InvalidParameterError(
        f"{owner} explains again with the explanation's method, but a bare tensor records none. "
        "Pass a faithmap.Explanation, or the method: method='saliency' (a name or a Method)."
    )
