"""Attention rollout: how much each patch token flows into the class token through the blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval, options
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.methods.attention import attention_rows, token_maps

HeadFusion = Literal["mean", "max", "min"]


def fuse_heads(attention: Tensor, how: str) -> Tensor:
    """``(B, heads, T, T)`` attention to ``(B, T, T)``: the heads' mean, maximum or minimum."""
    if how == "mean":
        return attention.mean(1)
    return attention.amax(1) if how == "max" else attention.amin(1)


def discard_lowest(fused: Tensor, ratio: float) -> Tensor:
    """``fused (B, T, T)`` with its lowest ``int(ratio * T * T)`` weights per sample set to 0.

    The class token's attention to itself (the first entry) is never discarded, as in the
    reference implementation.
    """
    flat = fused.flatten(1)
    count = int(flat.shape[1] * ratio)
    if count == 0:
        return fused
    lowest = flat.topk(count, dim=1, largest=False).indices
    keep = torch.ones_like(flat, dtype=torch.bool).scatter(1, lowest, False)
    keep[:, 0] = True
    return (flat * keep).view_as(fused)


def rollout(attentions: list[Tensor], head_fusion: str, discard_ratio: float) -> Tensor:
    """``(B, T)``: the class token's row of the rollout ``Ã_L ... Ã_1``.

    Each block's ``Ã = rownorm(0.5 A + 0.5 I)``, ``A`` its fused (and sparsified) attention.

    The row is taken first and multiplied from the left, ``((e_0 Ã_L) Ã_{L-1}) ... Ã_1``:
    ``T^2`` per block instead of the ``T^3`` of the whole product.
    """
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    row = eye[:1].expand(attentions[0].shape[0], tokens).unsqueeze(1)
    for attention in reversed(attentions):
        fused = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio)
        mixed = 0.5 * fused + 0.5 * eye
        row = row @ (mixed / mixed.sum(-1, keepdim=True))
    return row.squeeze(1)


@register_method("attention_rollout")
@dataclass(frozen=True, kw_only=True)
class AttentionRollout(Method):
    """Attention rollout (Abnar and Zuidema 2020), read from the class token on the patch grid.

    Each block's attention ``(heads, T, T)`` is fused over heads (``head_fusion``), optionally
    sparsified by setting its lowest ``discard_ratio`` weights to zero, mixed with the identity
    for the residual connection, ``Ã = 0.5 A + 0.5 I``, and renormalised so each row sums to 1;
    the rollout is the product ``Ã_L ... Ã_1`` from the last block down to the first. The map
    is the class token's row over the patch tokens, laid out on the patch grid and upsampled
    bilinearly to the input size. One forward pass per input, no gradient: the map does not
    depend on the target (it explains what the class token attends to, for every class).
    Attention is captured as :mod:`faithmap.methods.attention` describes; a model without
    attention (a CNN) raises a :class:`~faithmap.errors.ModelError`.

    Parameters
    ----------
    head_fusion : {"mean", "max", "min"}, default="mean"
        How the heads of a block are combined (the paper: mean).
    discard_ratio : float in [0, 1), default=0.0
        Fraction of each block's fused attention weights, the lowest, set to zero before the
        identity is added (the reference implementation's option; the class token's attention
        to itself is kept). 0 is the paper's rollout.
    prefix_tokens : int >= 1 or None, default=None
        Leading tokens before the patch tokens: the class token first, then distillation or
        register tokens. ``None`` drops the fewest (at least one) that leave a patch grid of
        the image's shape.

    References
    ----------
    Abnar, Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    """

    image_only: ClassVar[bool] = True
    needs_attention: ClassVar[bool] = True
    parameter_constraints: ClassVar[Constraints] = {
        "head_fusion": [options(get_args(HeadFusion))],
        "discard_ratio": [Interval(float, 0.0, 1.0, closed="left")],
        "prefix_tokens": [Interval(int, 1), None],
    }

    head_fusion: HeadFusion = "mean"
    discard_ratio: float = 0.0
    prefix_tokens: int | None = None

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        def class_row(attentions: list[Tensor], _: list[Tensor]) -> Tensor:
            return rollout(attentions, self.head_fusion, self.discard_ratio)

        rows = attention_rows(model, inputs, class_row, owner=type(self).__name__)
        size = (inputs.shape[-2], inputs.shape[-1])
        return token_maps(rows, size, self.prefix_tokens).to(inputs.dtype)
