"""LRP rules for transformer operations, written as modified gradients (AttnLRP, CP-LRP).

As in :mod:`faithmap.methods.lrp_rules`, every tensor's relevance is its value times a signal,
``R = z * g``, so each rule is a replacement of an operation's gradient. The operations are
intercepted in the forward pass by a :class:`torch.overrides.TorchFunctionMode`, so the rules
reach functional calls as well as modules (``nn.LayerNorm`` calls ``F.layer_norm``), and nothing
is attached to, or changed in, the model. With ``x`` an operation's input and ``y`` its output:

- **Element-wise non-linearities** (GELU, SiLU, tanh, sigmoid, Mish, softplus): the identity
  rule ``R_x = R_y`` (AttnLRP eq. 9), ``g_x = g_y * y / stab(x)``.
- **LayerNorm and RMSNorm**: the identity rule through the division by the standard deviation,
  which is held constant, and the gradient of the remaining affine map (the centring and the
  scale), so ``R_x`` totals ``R_y`` less the share of the norm's bias (Ali et al. 2022's LN
  rule; AttnLRP prop. 3.4).
- **Products of two activations** (``a @ b``, ``a * b``, ``torch.bmm``): the uniform rule, half
  the relevance to each factor (AttnLRP prop. 3.2 and 3.3): the gradient of each factor, halved.
  A product with a constant (a weight, a scalar) is linear and keeps its gradient.
- **Softmax**, AttnLRP's rule (prop. 3.1, a Taylor expansion at ``x`` whose bias absorbs
  part of the relevance): ``R_x = x * (R_y - y * sum(R_y))``. With ``R_y = y * g_y`` this is
  ``x`` times the softmax's true gradient, so the rule is the plain gradient; relevance is *not*
  conserved through it. Or ``attention="constant"``: the attention weights are constants
  (Ali et al. 2022's AH rule; CP-LRP in the ``lxt`` package), all relevance goes through the
  values, and a bias-free model conserves it exactly.
- ``F.scaled_dot_product_attention`` is computed as its matrix products and softmax, with the
  rules above.

Sums (residual connections), reshapes and products with constants keep their gradient: exact
LRP-0, conservative. Any other operation between the output and the input is refused by
:func:`check_graph`, so a map is never silently computed with a rule that does not hold.

References
----------
Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin, Samek, "AttnLRP: Attention-Aware
Layer-Wise Relevance Propagation for Transformers", ICML 2024.

Ali, Schnake, Eberle, Montavon, Müller, Wolf, "XAI for Transformers: Better Explanations
through Conservative Propagation", ICML 2022.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

from faithmap.errors import ModelError
from faithmap.methods.lrp_rules import stabilize

Attention = Literal["attn_lrp", "constant"]
Backward = Callable[[Tensor], Sequence[Tensor]]


class _Rule(torch.autograd.Function):
    """Forward: an operation's output as it is. Backward: the rule's signals to its inputs."""

    @staticmethod
    def forward(ctx: Any, backward: Backward, output: Tensor, *inputs: Tensor) -> Tensor:
        ctx.rule_backward = backward
        return output.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, signal: Tensor) -> tuple[Tensor | None, ...]:
        return (None, None, *ctx.rule_backward(signal))


def _with_rule(backward: Backward, output: Tensor, *inputs: Tensor) -> Tensor:
    """``output``, attached to ``inputs`` with ``backward`` as its gradient."""
    result: Tensor = _Rule.apply(backward, output.detach(), *inputs)  # type: ignore[no-untyped-call]
    return result


def _bind(
    names: Sequence[str], args: tuple[Any, ...], kwargs: Mapping[str, Any], **defaults: Any
) -> dict[str, Any]:
    """The call's arguments by name, positional ones first."""
    bound = {**defaults, **dict(zip(names, args, strict=False))}
    bound.update(kwargs)
    return bound


def _needs_rule(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


ELEMENTWISE: frozenset[Callable[..., Any]] = frozenset(
    {
        F.gelu, F.silu, F.mish, F.softplus, F.tanh, F.sigmoid,
        torch.tanh, torch.sigmoid, Tensor.tanh, Tensor.sigmoid,
    }
)  # fmt: skip
"""Element-wise non-linearities: the identity rule."""
PRODUCTS: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.matmul, torch.bmm, torch.mul, Tensor.matmul, Tensor.bmm, Tensor.mul,
        Tensor.__matmul__, Tensor.__rmatmul__, Tensor.__mul__, Tensor.__rmul__,
    }
)  # fmt: skip
"""Bilinear operations: the uniform rule when both factors carry relevance."""
SOFTMAX: frozenset[Callable[..., Any]] = frozenset({F.softmax, torch.softmax, Tensor.softmax})
LAYER_NORM: frozenset[Callable[..., Any]] = frozenset({F.layer_norm, torch.layer_norm})
RMS_NORM: frozenset[Callable[..., Any]] = frozenset({F.rms_norm, torch.rms_norm})


class TransformerRules(TorchFunctionMode):
    """Applies the rules to the operations of the forward passes made while ``active``.

    Parameters
    ----------
    attention : {"attn_lrp", "constant"}
        AttnLRP's softmax rule, or attention weights held constant.
    epsilon : float
        The stabiliser of the identity rule's ``y / x``.
    """

    def __init__(self, attention: Attention, epsilon: float) -> None:
        super().__init__()
        self.attention = attention
        self.epsilon = epsilon
        self.active = False
        self.applied = 0
        """Rules applied in the current forward pass."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if not (self.active and torch.is_grad_enabled()):
            return func(*args, **kwargs)
        if func in ELEMENTWISE:
            return self.identity(func, args, kwargs)
        if func in PRODUCTS:
            return self.product(func, args, kwargs)
        if func in SOFTMAX:
            return self.softmax(func, args, kwargs)
        if func in LAYER_NORM:
            return self.layer_norm(func, args, kwargs)
        if func in RMS_NORM:
            return self.rms_norm(func, args, kwargs)
        if func is F.scaled_dot_product_attention:
            return self.scaled_dot_product_attention(args, kwargs)
        return func(*args, **kwargs)

    def identity(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """AttnLRP's identity rule: ``g_x = g_y * y / stab(x)``."""
        x = args[0] if args else kwargs["input"]
        if not _needs_rule(x) or kwargs.get("inplace") or (len(args) > 1 and args[1] is True):
            return func(*args, **kwargs)  # an in-place call is left to the graph check
        with torch.no_grad():
            y = func(*args, **kwargs)
        ratio = y / stabilize(x.detach(), self.epsilon)
        self.applied += 1
        return _with_rule(lambda signal: (signal * ratio,), y, x)

    def product(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """The uniform rule: each of the ``n`` factors with relevance gets ``1 / n`` of it."""
        factors = [i for i, arg in enumerate(args) if _needs_rule(arg)]
        if len(factors) < 2:
            return func(*args, **kwargs)
        leaves = [
            arg.detach().requires_grad_(True) if i in factors else arg for i, arg in enumerate(args)
        ]
        with torch.enable_grad():
            y = func(*leaves, **kwargs)
        share = 1.0 / len(factors)

        def backward(signal: Tensor) -> Sequence[Tensor]:
            return torch.autograd.grad(y, [leaves[i] for i in factors], signal * share)

        self.applied += 1
        return _with_rule(backward, y, *(args[i] for i in factors))

    def softmax(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """AttnLRP's softmax rule (the gradient), or constant attention weights."""
        y = func(*args, **kwargs)
        if self.attention == "constant":
            self.applied += 1
            return y.detach()
        return y

    def layer_norm(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """The gradient of ``(x - mean) / std * w + b`` with ``std`` held constant."""
        bound = _bind(
            ("input", "normalized_shape", "weight", "bias", "eps"), args, kwargs, eps=1e-5
        )
        x: Tensor = bound["input"]
        if not _needs_rule(x):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        dims = tuple(range(-len(bound["normalized_shape"]), 0))
        std = torch.sqrt(x.detach().var(dims, unbiased=False, keepdim=True) + bound["eps"])
        weight: Tensor | None = bound["weight"]

        def backward(signal: Tensor) -> Sequence[Tensor]:
            scaled = signal if weight is None else signal * weight
            return ((scaled - scaled.mean(dims, keepdim=True)) / std,)

        self.applied += 1
        return _with_rule(backward, y, x)

    def rms_norm(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        """The gradient of ``x / rms * w`` with ``rms`` held constant."""
        bound = _bind(("input", "normalized_shape", "weight", "eps"), args, kwargs, eps=None)
        x: Tensor = bound["input"]
        if not _needs_rule(x):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        dims = tuple(range(-len(bound["normalized_shape"]), 0))
        eps = torch.finfo(x.dtype).eps if bound["eps"] is None else bound["eps"]
        rms = torch.sqrt(x.detach().square().mean(dims, keepdim=True) + eps)
        weight: Tensor | None = bound["weight"]

        def backward(signal: Tensor) -> Sequence[Tensor]:
            return ((signal if weight is None else signal * weight) / rms,)

        self.applied += 1
        return _with_rule(backward, y, x)

    def scaled_dot_product_attention(self, args: tuple[Any, ...], kwargs: Any) -> Tensor:
        """``softmax(q k^T * scale + mask) v`` with the product and softmax rules."""
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
        bound = _bind(names, args, kwargs, attn_mask=None, dropout_p=0.0, is_causal=False)
        if bound["dropout_p"]:
            raise ModelError(
                f"LRP needs attention without dropout, but scaled_dot_product_attention was "
                f"called with dropout_p={bound['dropout_p']}. Explain the model in eval mode "
                "(Model(..., eval_mode=True), the default)."
            )
        query, key, value = bound["query"], bound["key"], bound["value"]
        if bound.get("enable_gqa"):
            groups = query.shape[-3] // key.shape[-3]
            key = key.repeat_interleave(groups, -3)
            value = value.repeat_interleave(groups, -3)
        scale = bound.get("scale")
        scale = query.shape[-1] ** -0.5 if scale is None else scale
        scores = self.product(torch.matmul, (query, key.transpose(-2, -1)), {}) * scale
        mask = bound["attn_mask"]
        if bound["is_causal"]:
            length, keys = scores.shape[-2:]
            mask = torch.ones(length, keys, dtype=torch.bool, device=scores.device).tril()
        if mask is not None and mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask is not None:
            scores = scores + mask
        weights = self.softmax(torch.softmax, (scores, -1), {})
        result: Tensor = self.product(torch.matmul, (weights, value), {})
        return result


LINEAR_OPERATIONS = frozenset(
    {
        "Add", "Sub", "Neg", "Convolution", "T", "Permute", "View", "UnsafeView", "Reshape",
        "ReshapeAlias", "Expand", "Squeeze", "Unsqueeze", "Cat", "Stack", "Slice", "Select",
        "Index", "IndexSelect", "Clone", "Mean", "Sum", "AvgPool2D", "AdaptiveAvgPool2D",
        "NativeBatchNorm", "UpsampleNearest2D", "UpsampleBilinear2D", "UpsampleBicubic2D",
        "ConstantPadNd", "ToCopy", "Transpose", "AsStrided", "Split", "SplitWithSizes",
        "Unbind", "Flip", "Roll", "Repeat", "Alias", "Unfold", "Im2Col", "Col2Im", "MaskedFill",
        "Relu", "Threshold", "MaxPool2DWithIndices", "AccumulateGrad", "_Rule", "_Redirect",
    }
)  # fmt: skip
"""Autograd operations whose gradient is their LRP rule: linear maps (sums and reshapes: LRP-0),
ReLU and max pooling (relevance to the active unit), and the rules' own nodes."""
LINEAR_IN_ONE = frozenset({"Mul", "Div", "Mm", "Bmm", "Addmm", "Baddbmm", "Matmul"})
"""Operations that are linear when only one operand (of a division: the numerator) carries
relevance."""


def _operation(node: Any) -> str:
    return re.sub(r"Backward\d*$", "", type(node).__name__)


def _outputs(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    values = list(output.values()) if isinstance(output, Mapping) else output
    if isinstance(values, list | tuple):
        return [value for value in values if isinstance(value, Tensor)]
    return []


def check_graph(output: Any, attention: Attention) -> None:
    """Refuse any operation between the model's outputs and its input that has no rule here.

    Raises
    ------
    ModelError
        Naming the operation, what has a rule, and what to do.
    """
    allowed = LINEAR_OPERATIONS | ({"Softmax"} if attention == "attn_lrp" else set())
    seen: set[Any] = set()
    pending = [tensor.grad_fn for tensor in _outputs(output)]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        parents = [parent for parent, _ in node.next_functions if parent is not None]
        operation = _operation(node)
        linear = operation in allowed or (operation in LINEAR_IN_ONE and len(parents) <= 1)
        if operation == "Div" and len(node.next_functions) > 1:
            linear = linear and node.next_functions[1][0] is None  # a constant divisor
        if not linear:
            raise _unsupported(operation)
        pending.extend(parents)


def _unsupported(operation: str) -> ModelError:
    return ModelError(
        f"attn_lrp has no LRP rule for the operation {operation!r} in the model's forward "
        "pass, so its map would be wrong. Rules exist for linear layers, sums and reshapes, "
        "ReLU, max pooling, GELU, SiLU, tanh, sigmoid, Mish, softplus, softmax, F.layer_norm "
        "and F.rms_norm (nn.LayerNorm, nn.RMSNorm), F.scaled_dot_product_attention and "
        "products (matmul, mul, bmm) of two activations, each called through torch in Python. "
        "Write the operation with these (a hand-written RMSNorm's rsqrt as nn.RMSNorm, "
        "nn.MultiheadAttention as Linear layers and F.scaled_dot_product_attention), or "
        "explain the model with integrated_gradients or a perturbation method (occlusion, rise)."
    )
