"""Attention-based attribution: raw attention and attention rollout from each generated step.

Step ``s`` is predicted at position ``P - 1 + s`` of ``prompt + continuation``; its attribution
to a prompt token is that position's attention to the token, averaged over heads (one layer, or
the mean over layers), or the rollout of the head-averaged attention with the residual
connection (``0.5 A + 0.5 I``, rows renormalised) through every layer (Abnar and Zuidema 2020).
Token values are summed per feature. One forward pass with ``output_attentions=True`` serves
every step; Hugging Face models are switched to eager attention for it (and back).

References
----------
Abnar, Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020; Jain, Wallace,
"Attention is not Explanation", NAACL 2019 (why attention is a weak attribution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from faithmap.core.constraints import Constraints, InstanceOf
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.generation.continuation import Continuation
from faithmap.generation.gradients import per_feature
from faithmap.generation.language_model import CausalLM
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)


class AttentionReader(nn.Module):
    """Token ids ``(B, P + S)`` to every layer's head-averaged attention ``(B, L, T, T)``."""

    def __init__(self, lm: CausalLM) -> None:
        super().__init__()
        self.lm = lm
        if isinstance(lm.model, nn.Module):
            self.module = lm.model

    def forward(self, ids: Tensor) -> Tensor:
        """The attention weights of every layer, averaged over heads."""
        with self.lm.eager_attention():
            output: Any = self.lm.run(ids, output_attentions=True)
        attentions = getattr(output, "attentions", None)
        if not attentions or any(a is None for a in attentions):
            raise ModelError(
                "The model returned no attention weights with output_attentions=True. Load it with "
                "attn_implementation='eager'."
            )
        return torch.stack([a.float().mean(dim=1) for a in attentions], dim=1)


def read_attention(task: GenerationTask) -> Tensor:
    """``(L, T, T)`` head-averaged attention of every layer on ``prompt + continuation``, one
    forward pass through :class:`faithmap.Model`."""
    sequence = task.continuation.sequence.to(task.device)[None]
    model = task.adopt("attention", AttentionReader(task.lm), batch_size=1)
    out: list[Tensor] = []

    def consume(_: Tensor, __: Tensor, output: Tensor) -> None:
        out.append(output[0].detach().clone())

    model.output_rows(1, 1, lambda _, __: sequence, consume, device=task.device)
    return out[0]


def step_rows(continuation: Continuation, matrix: Tensor) -> Tensor:
    """Rows ``P - 1 + s`` (the positions predicting each step) and prompt columns: ``(S, P)``."""
    length = len(continuation.prompt)
    return matrix[length - 1 : length - 1 + continuation.steps, :length]


def rollout(attention: Tensor) -> Tensor:
    """Attention rollout ``(T, T)`` of head-averaged attention ``(L, T, T)``: the product of
    ``0.5 A_l + 0.5 I`` (rows renormalised) from the last layer down to the first."""
    identity = torch.eye(attention.shape[-1], dtype=attention.dtype, device=attention.device)
    flow = identity
    for layer in attention:
        mixed = 0.5 * layer + 0.5 * identity
        flow = (mixed / mixed.sum(dim=-1, keepdim=True)) @ flow
    return flow


@register_generation_method("attention")
@dataclass(frozen=True, kw_only=True)
class GenerationAttention(GenerationMethod):
    """Raw attention from each generated step's position to the prompt's tokens.

    Parameters
    ----------
    layer : int or None, default=-1
        The layer read (negative counts from the last); ``None`` averages every layer.

    References
    ----------
    Jain, Wallace, "Attention is not Explanation", NAACL 2019.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "layer": [InstanceOf((int,), "an int"), None],
    }

    layer: int | None = -1

    def attribute(self, task: GenerationTask) -> Tensor:
        attention = read_attention(task)
        if self.layer is None:
            matrix = attention.mean(dim=0)
        else:
            layers = attention.shape[0]
            if not -layers <= self.layer < layers:
                raise InvalidParameterError(
                    f"The 'layer' of attention must be in [{-layers}, {layers - 1}] (the model "
                    f"has {layers} layers). Got {self.layer} instead."
                )
            matrix = attention[self.layer]
        return per_feature(task, step_rows(task.continuation, matrix))


@register_generation_method("attention_rollout")
@dataclass(frozen=True, kw_only=True)
class GenerationAttentionRollout(GenerationMethod):
    """Attention rollout (Abnar and Zuidema 2020) from each generated step to the prompt.

    References
    ----------
    Abnar, Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    """

    def attribute(self, task: GenerationTask) -> Tensor:
        return per_feature(task, step_rows(task.continuation, rollout(read_attention(task))))
