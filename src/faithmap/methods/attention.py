"""Reading a transformer's attention: each block's ``softmax(q k^T / sqrt(d))`` and its gradient.

Attention methods (rollout, gradient-weighted attention) need the attention probabilities of
every block, shape ``(B, heads, T, T)``, and sometimes the target score's gradient with respect
to them. Nothing is attached to the model: while faithmap runs it, a
:class:`torch.overrides.TorchFunctionMode` keeps every softmax taken over the last axis of a 4-D
tensor whose last two axes are equal (self-attention over ``T`` tokens), whether called as
``nn.Softmax``, ``F.softmax``, ``torch.softmax`` or ``Tensor.softmax``. A fused
``F.scaled_dot_product_attention`` (PyTorch's ``nn.MultiheadAttention``, timm, Hugging Face's
``sdpa`` attention) is computed explicitly instead, as PyTorch documents it (scores, mask,
softmax, values), so its probabilities are kept too. A model whose forward takes no softmax
Python can see (a CNN, TorchScript, ONNX, a fused kernel such as flash attention) is refused.

Token maps are read from the class token's row: the leading ``prefix_tokens`` (class, then
distillation or register tokens) are dropped and the patch tokens laid out row by row on the
patch grid (:func:`faithmap.methods.layers.token_grid`), then upsampled to the input size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from faithmap.core.model import Model
from faithmap.core.readout import Activation
from faithmap.core.targets import Target
from faithmap.errors import ModelError, ShapeError
from faithmap.methods.layers import MAX_PREFIX_TOKENS, token_grid, upsample

_SOFTMAXES = {F.softmax, torch.softmax, Tensor.softmax}

ALTERNATIVES = (
    "For a CNN use grad_cam, layer_cam or score_cam; for any model integrated_gradients, rise or "
    "occlusion."
)
"""What the refusal of a model without attention suggests instead."""

Combine = Callable[[list[Tensor], list[Tensor]], Tensor]
"""``combine(attentions, gradients)``: the ``(B, T)`` class-token row of one batch from each
block's attention ``(B, heads, T, T)`` (and its gradient, when asked for)."""


def _softmax_dim(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs["dim"] if "dim" in kwargs else (args[1] if len(args) > 1 else None)


class AttentionCapture(TorchFunctionMode):
    """Keeps each attention probability tensor ``(B, heads, T, T)`` computed inside the block.

    With ``gradients``, a hook on each kept tensor that requires grad stores the gradient the
    backward pass brings it (``gradients[i]`` for ``attentions[i]``). :meth:`clear` forgets both.
    """

    def __init__(self, *, gradients: bool) -> None:
        super().__init__()
        self.want_gradients = gradients
        self.attentions: list[Tensor] = []
        self.gradients: dict[int, Tensor] = {}

    def clear(self) -> None:
        """Forget what earlier forward passes left (batch-size measurement, the last batch)."""
        self.attentions, self.gradients = [], {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._explicit_attention(*args, **kwargs)
        result = func(*args, **kwargs)
        if func in _SOFTMAXES and _softmax_dim(args, kwargs) in (-1, 3):
            self._keep(result)
        return result

    def _keep(self, probabilities: Tensor) -> None:
        shape = probabilities.shape
        if probabilities.dim() != 4 or shape[-1] != shape[-2]:
            return  # not self-attention over T tokens
        index = len(self.attentions)
        self.attentions.append(probabilities)
        if self.want_gradients and probabilities.requires_grad:

            def store(gradient: Tensor) -> None:
                self.gradients[index] = gradient

            probabilities.register_hook(store)  # type: ignore[no-untyped-call]

    def _explicit_attention(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        scale: float | None = None,
        enable_gqa: bool = False,
    ) -> Tensor:
        """``F.scaled_dot_product_attention`` step by step, keeping its probabilities."""
        if dropout_p > 0:
            raise ModelError(
                f"The model calls scaled_dot_product_attention with dropout_p={dropout_p} while "
                "it is explained, so its attention is random. Put its attention dropout to 0 "
                "in evaluation mode (faithmap calls model.eval(), unless eval_mode=False)."
            )
        if enable_gqa and key.shape[-3] != query.shape[-3]:
            repeats = query.shape[-3] // key.shape[-3]
            key = key.repeat_interleave(repeats, dim=-3)
            value = value.repeat_interleave(repeats, dim=-3)
        factor = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
        scores = (query @ key.transpose(-2, -1)) * factor
        if is_causal:
            allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~allowed, float("-inf"))
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        elif attn_mask is not None:
            scores = scores + attn_mask
        probabilities = scores.softmax(dim=-1)
        self._keep(probabilities)
        return probabilities @ value


def _refuse_no_attention(owner: str) -> ModelError:
    return ModelError(
        f"{owner} reads the attention of a transformer, and this model's forward pass computed "
        "none: no softmax over the last axis of a (batch, heads, tokens, tokens) tensor was "
        "called from Python, nor scaled_dot_product_attention. It needs a vision transformer "
        "(faithmap's ViT, a Hugging Face ViT with eager or sdpa attention, timm). "
        f"{ALTERNATIVES}"
    )


def _checked(attentions: list[Tensor], rows: int, owner: str) -> list[Tensor]:
    if not attentions:
        raise _refuse_no_attention(owner)
    shapes = {(a.shape[0], a.shape[-1]) for a in attentions}
    if len(shapes) != 1 or attentions[0].shape[0] != rows:
        raise ShapeError(
            f"{owner} found attention of shapes {[tuple(a.shape) for a in attentions]} in one "
            f"pass over {rows} inputs; it needs every block's attention batch first, (N, heads, "
            "T, T) with the same T. Models mixing token counts (pooling, cross-attention "
            "softmaxes of a square shape) are not supported."
        )
    return attentions


def attention_rows(
    model: Model,
    inputs: Tensor,
    combine: Combine,
    *,
    target: Target | None = None,
    activation: Activation = "logits",
    owner: str,
) -> Tensor:
    """``(N, T)``: ``combine`` of each batch's attentions (and their gradients, with ``target``).

    Without a target, one forward pass per input; with one, the target score's gradient is
    taken too (one forward and one backward pass per input) and every attention gets its
    gradient (zeros where the score does not depend on it).
    """
    capture = AttentionCapture(gradients=target is not None)
    rows_out: list[Tensor] = []

    def make_rows(samples: Tensor, _: Tensor) -> Tensor:
        capture.clear()  # forgets what batch-size measurement passes left behind
        return inputs[samples]

    def consume(samples: Tensor, *_: Any) -> None:
        attentions = _checked(capture.attentions, samples.shape[0], owner)
        gradients = [
            capture.gradients.get(i, torch.zeros_like(a)).detach() for i, a in enumerate(attentions)
        ]
        rows_out.append(combine([a.detach() for a in attentions], gradients))
        capture.clear()

    with capture:
        if target is None:
            model.output_rows(
                inputs.shape[0], 1, make_rows, consume, activation=activation, device=inputs.device
            )
        else:
            model.gradient_rows(
                inputs.shape[0],
                1,
                make_rows,
                target,
                consume,
                activation=activation,
                device=inputs.device,
            )
    return torch.cat(rows_out)


def token_maps(rows: Tensor, size: tuple[int, int], prefix_tokens: int | None) -> Tensor:
    """Class-token rows ``(N, T)`` as maps ``(N, 1, H, W)``: patches on the grid, upsampled.

    ``prefix_tokens=None`` drops the fewest leading tokens (at least the class token) whose
    rest forms a patch grid of the image (:func:`token_grid`).
    """
    tokens = rows.shape[1]
    if prefix_tokens is None:
        if tokens < 2:
            raise ShapeError(
                f"The attention covers {tokens} token, so there is no patch token beside the "
                "class token to lay out on a grid; the input is smaller than one patch."
            )
        try:
            drop, h, w = token_grid(tokens - 1, size, None)
        except ShapeError:
            raise ShapeError(
                f"The attention covers {tokens} tokens, which do not form a class token, up "
                f"to {MAX_PREFIX_TOKENS} more leading tokens and a patch grid for a {size[0]} x "
                f"{size[1]} image. Give the number of leading (class, distillation, register) "
                "tokens with prefix_tokens=...; the patch tokens must follow them."
            ) from None
        drop += 1
    else:
        drop, h, w = token_grid(tokens, size, prefix_tokens)
    patches = rows[:, drop:].reshape(rows.shape[0], 1, h, w)
    return upsample(patches, size)
