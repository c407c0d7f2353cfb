"""Helpers the batteries share: naming checks, comparing values, messages and model state."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.constraints import ConstraintList, describe
from faithmap.errors import InvalidParameterError
from faithmap.testing.data import ATOL, RTOL, Check


def _named(owner: str, check_name: str, function: Check) -> Check:
    """``function`` raising AssertionError naming ``owner`` and the check when it fails."""

    def run() -> None:
        try:
            function()
        except AssertionError as error:
            raise AssertionError(f"{owner} failed the check {check_name!r}: {error}") from error
        except Exception as error:
            raise AssertionError(
                f"{owner} failed the check {check_name!r}: it raised "
                f"{type(error).__name__}: {error}"
            ) from error

    run.__name__ = run.__qualname__ = check_name
    return run


def _message_pattern(name: str, owner: str, constraints: ConstraintList) -> str:
    return (
        re.escape(f"The {name!r} parameter of {owner} must be {describe(constraints)}.")
        + r" Got .+ instead\."
    )


def _assert_message_form(
    error: InvalidParameterError, name: str, owner: str, constraints: ConstraintList
) -> None:
    message = str(error)
    pattern = _message_pattern(name, owner, constraints)
    assert re.fullmatch(pattern, message, flags=re.DOTALL), (
        f"an invalid {name!r} raised InvalidParameterError with the message {message!r}, not "
        f"the one form 'The {name!r} parameter of {owner} must be {describe(constraints)}. "
        "Got ... instead.'"
    )


def _same_value(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    return bool(a == b)


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return set(a) == set(b) and all(_same_value(a[key], b[key]) for key in a)


State = tuple[list[bool], list[bool], int, dict[str, Tensor]]
"""Training flags, ``requires_grad`` flags, hook count and a copy of the weights."""


def module_state(net: nn.Module) -> State:
    """What a method or metric must leave as it found it in a module."""
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in net.modules()
    )
    return (
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        hooks,
        {k: v.clone() for k, v in net.state_dict().items()},
    )


def assert_same_state(net: nn.Module, before: State) -> None:
    """Raise AssertionError naming what changed in ``net`` since ``before``."""
    training, grads, hooks, weights = module_state(net)
    assert training == before[0], f"training flags changed from {before[0]} to {training}"
    assert grads == before[1], f"requires_grad flags changed from {before[1]} to {grads}"
    assert hooks == before[2], f"{hooks} hooks are registered where there were {before[2]}"
    for key, value in weights.items():
        assert torch.equal(value, before[3][key]), f"the weights {key!r} changed"


def _assert_close(a: Tensor, b: Tensor, what: str) -> None:
    try:
        torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL, equal_nan=True)
    except AssertionError as error:
        raise AssertionError(f"{what}: {error}") from None


def _bind(function: Callable[[Any], None], case: Any) -> Check:
    def bound() -> None:
        function(case)

    return bound
