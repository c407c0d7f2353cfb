"""Guided Backpropagation: the input gradient with every ReLU, GELU or SiLU passing back positive
signal only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from faithmap.core.constraints import Constraints
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.errors import ModelError
from faithmap.methods.copies import Perturb, gradient_copies, unperturbed

_RELUS = {F.relu, torch.relu, Tensor.relu}
_RELUS_IN_PLACE = {torch.relu_, Tensor.relu_}
_SMOOTH = {F.gelu, F.silu}
"""Activations whose guided backward is ``relu(grad_out) * f'(x)`` (:class:`_PositiveGradient`)."""


class _GuidedReLU(torch.autograd.Function):
    """``relu(x)`` whose backward keeps gradients that are positive where ``x`` is positive."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        positive = x > 0
        ctx.save_for_backward(positive)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        positive: Tensor = ctx.saved_tensors[0]
        return grad.clamp(min=0) * positive


class _PositiveGradient(torch.autograd.Function):
    """The identity, whose backward passes on only the positive part of the gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


class _GuidedMode(TorchFunctionMode):
    """Replaces every ReLU call (``nn.ReLU``, ``F.relu``, ``torch.relu``, in place or not) and
    every GELU and SiLU call (``nn.GELU``, ``F.gelu``, ``nn.SiLU``, ``F.silu``)."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced = 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        in_place = func in _RELUS_IN_PLACE or (
            func is F.relu and bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
        )
        if func in _RELUS or in_place:
            self.replaced += 1
            x = args[0] if args else kwargs["input"]
            guided: Tensor = _GuidedReLU.apply(x)  # type: ignore[no-untyped-call]
            return x.copy_(guided) if in_place else guided
        if func in _SMOOTH:
            self.replaced += 1
            x = args[0] if args else kwargs["input"]
            silu_in_place = func is F.silu and bool(
                kwargs.get("inplace", args[1] if len(args) > 1 else False)
            )
            if silu_in_place:  # computed on a copy, which its backward reads after x changed
                args, kwargs = (x.clone(),), {}
            output: Tensor = _PositiveGradient.apply(func(*args, **kwargs))  # type: ignore[no-untyped-call]
            return x.copy_(output) if silu_in_place else output
        return func(*args, **kwargs)


@contextmanager
def guided_relus() -> Iterator[_GuidedMode]:
    """Inside the block, ReLUs, GELUs and SiLUs called through Python pass back positive
    gradients only.

    Nothing is attached to the model: the calls are intercepted with a
    :class:`torch.overrides.TorchFunctionMode`, which ends with the block even if it raises.
    """
    with _GuidedMode() as mode:
        yield mode


@register_method("guided_backprop")
@dataclass(frozen=True, kw_only=True)
class GuidedBackprop(Method):
    """Guided Backpropagation (Springenberg et al. 2015).

    The input gradient of the target score, computed with every ReLU's backward pass replaced
    by ``grad_in = relu(grad_out) * (x > 0)``: only positive signal that went through active
    units reaches the input. Every ReLU called through Python is replaced, whether an
    ``nn.ReLU`` module or a functional ``F.relu`` / ``torch.relu`` / ``Tensor.relu`` call (in
    place or not), without hooks on the model.

    Transformers use GELU or SiLU instead. Their guided backward keeps the same two parts, the
    deconvnet's "only positive signal flows back" and the ordinary local derivative:
    ``grad_in = relu(grad_out) * f'(x)`` for every ``nn.GELU`` / ``F.gelu`` (either
    approximation) and ``nn.SiLU`` / ``F.silu`` call. For ReLU, ``f'(x) = (x > 0)`` and this
    is the rule above; for GELU and SiLU, ``f'`` is slightly negative for inputs below about
    -0.75 and -1.28, so a guided map of a transformer may hold small negative values (the
    default ``reduce="abs_sum"`` takes magnitudes). Other activations (ReLU6, LeakyReLU, Tanh,
    Hugging Face's hand-written ``gelu_new``) keep their ordinary gradient, as in Captum. A
    model whose forward calls none of these activations where Python can see it (TorchScript,
    ONNX, no such activation) raises a :class:`~faithmap.errors.ModelError`.

    Parameters
    ----------
    reduce : {"abs_sum", "sum", "mean", "max", "none"}, default="abs_sum"
        How image channels are collapsed; the sum of magnitudes is the usual grayscale map.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Springenberg, Dosovitskiy, Brox, Riedmiller, "Striving for Simplicity: The All
    Convolutional Net", ICLR Workshop 2015.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "reduce": [REDUCE],
        "activation": [ACTIVATION],
    }

    reduce: Reduce = "abs_sum"
    activation: Activation = "logits"

    def copy_attributions(
        self, model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb
    ) -> Tensor:
        """Guided gradients of each copy ``(N, copies, ...)``; see :mod:`.copies`."""
        with guided_relus() as mode:
            gradients = gradient_copies(
                model,
                inputs,
                target,
                copies,
                perturb,
                lambda grads, _: grads,
                activation=self.activation,
            )
        if mode.replaced == 0:
            raise ModelError(
                "Guided Backprop found no ReLU, GELU or SiLU in the model's forward pass: it "
                "replaces calls of nn.ReLU, F.relu, torch.relu, Tensor.relu, nn.GELU, F.gelu, "
                "nn.SiLU and F.silu made from Python, and this model made none (a TorchScript "
                "or exported model, or one with other activations). Use 'saliency' or "
                "'integrated_gradients' instead."
            )
        return gradients

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        attributions = self.copy_attributions(model, inputs, target, 1, unperturbed(inputs))
        return reduce_channels(attributions[:, 0], self.reduce)
