"""The top-level entry points: :func:`get_method` and :func:`explain`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from faithmap.errors import InvalidParameterError
from faithmap.explanation import Explanation
from faithmap.methods.base import Method
from faithmap.model import Model
from faithmap.registry import method_class
from faithmap.targets import TargetLike


def get_method(name: str, **params: Any) -> Method:
    """The registered method ``name`` configured with ``params``.

    Examples
    --------
    >>> get_method("integrated_gradients", steps=16).steps
    16
    """
    cls = method_class(name)
    try:
        method = cls(**params)
    except TypeError as err:
        fields = sorted(field.name for field in dataclasses.fields(cls) if field.init)
        raise InvalidParameterError(
            f"Method {name!r} got an unexpected parameter ({err}). Its parameters are: "
            f"{', '.join(fields)}."
        ) from err
    if not isinstance(method, Method):
        raise InvalidParameterError(f"{name!r} is registered but is not a Method.")
    return method


def explain(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    *,
    method: str = "integrated_gradients",
    target: TargetLike = None,
    **params: Any,
) -> Explanation:
    """Explain ``target`` for each input with the method ``method``.

    Parameters
    ----------
    model : Model, nn.Module or callable
    inputs : Tensor
        One batch, batch first.
    method : str, default="integrated_gradients"
        A name from :func:`faithmap.available`.
    target : None, int, sequence or tensor of ints, or callable
        ``None`` explains each sample's predicted class.
    **params
        The method's parameters (``steps``, ``seed``, ...).
    """
    return get_method(method, **params).explain(model, inputs, target)


def method_of(explanation: object, method: Method | str | None, owner: str) -> Method:
    """The method to explain again with: ``method`` if given, else the one ``explanation`` records.

    Metrics that re-explain (sensitivity, Lipschitz, the sanity checks) rebuild the method
    from the explanation's name and config.

    Raises
    ------
    InvalidParameterError
        If ``method`` is None and ``explanation`` is a bare tensor, which records no method.
    """
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        return get_method(method)
    if isinstance(explanation, Explanation):
        return get_method(explanation.method, **dict(explanation.config))
    raise InvalidParameterError(
        f"{owner} explains again with the explanation's method, but a bare tensor records none. "
        "Pass a faithmap.Explanation, or the method: method='saliency' (a name or a Method)."
    )
