"""The top-level entry points: :func:`get_method` and :func:`explain`."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.model import ModelLike
from faithmap.core.registry import make_method
from faithmap.core.targets import TargetLike


def get_method(name: str, **params: Any) -> Method:
    """The registered method ``name`` configured with ``params``.

    Examples
    --------
    >>> get_method("integrated_gradients", steps=16).steps
    16
    """
    return make_method(name, params)


def explain(
    model: ModelLike,
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
