"""Gradient-weighted attention relevance (Chefer et al. 2021): rollout of grad ⊙ attention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.methods.attention import attention_rows, token_maps


def relevance(attentions: list[Tensor], gradients: list[Tensor]) -> Tensor:
    """``(B, T)``: the class token's row of ``R``, where ``R = I`` and ``R += Ā R`` block by
    block with ``Ā = mean_heads(max(∇A ⊙ A, 0))``.

    That is ``R = (I + Ā_L) ... (I + Ā_1)``; its row is taken first and multiplied from the
    left, ``T^2`` per block instead of ``T^3``.
    """
    tokens = attentions[0].shape[-1]
    row = torch.zeros(
        attentions[0].shape[0], 1, tokens, dtype=attentions[0].dtype, device=attentions[0].device
    )
    row[:, 0, 0] = 1
    for attention, gradient in zip(reversed(attentions), reversed(gradients), strict=True):
        row = row + row @ (gradient * attention).clamp(min=0).mean(1)
    return row.squeeze(1)


@register_method("attention_gradient")
@dataclass(frozen=True, kw_only=True)
class AttentionGradient(Method):
    """Gradient-weighted attention relevance (Chefer et al. 2021, generic explainability).

    The relevance of token ``j`` to token ``i`` starts as the identity ``R = I`` (each token is
    itself) and is updated block by block, first to last, with that block's attention ``A``
    ``(heads, T, T)`` weighted by the gradient of the target score with respect to it:
    ``Ā = mean_heads(max(∇A ⊙ A, 0))`` and ``R ← R + Ā R``. The map is the class token's row
    of ``R`` over the patch tokens, laid out on the patch grid and upsampled bilinearly to the
    input size. Unlike :class:`~faithmap.methods.attention_rollout.AttentionRollout` it is
    class-specific: only heads whose attention raises the target score count. Named
    ``attention_gradient`` after what it multiplies; the paper's rule for self-attention
    (its equations 5-6) on encoder-only models. One forward and one backward pass per input.
    Attention is captured as :mod:`faithmap.methods.attention` describes; a model without
    attention (a CNN) raises a :class:`~faithmap.errors.ModelError`.

    Parameters
    ----------
    prefix_tokens : int >= 1 or None, default=None
        Leading tokens before the patch tokens, the class token first; ``None`` drops the
        fewest (at least one) that leave a patch grid of the image's shape.
    activation : {"logits", "softmax"}, default="logits"
        The score differentiated: the class logit (the paper) or its softmax.

    References
    ----------
    Chefer, Gur, Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021.
    """

    image_only: ClassVar[bool] = True
    needs_attention: ClassVar[bool] = True
    parameter_constraints: ClassVar[Constraints] = {
        "prefix_tokens": [Interval(int, 1), None],
        "activation": [ACTIVATION],
    }

    prefix_tokens: int | None = None
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        def class_row(attentions: list[Tensor], gradients: list[Tensor]) -> Tensor:
            return relevance(attentions, gradients)

        rows = attention_rows(
            model,
            inputs,
            class_row,
            target=target,
            activation=self.activation,
            owner=type(self).__name__,
        )
        size = (inputs.shape[-2], inputs.shape[-1])
        return token_maps(rows, size, self.prefix_tokens).to(inputs.dtype)
