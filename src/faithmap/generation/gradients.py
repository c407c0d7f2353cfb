"""Integrated Gradients and Input x Gradient on the prompt embeddings, summed per feature.

The path variable is the prompt's embedding matrix ``(P, D)``: the gradient of a step's target
with respect to it, times the embedding difference, summed over the ``D`` channels and over the
tokens of each feature (Sundararajan et al. 2017 sum embedding channels the same way; so does
Captum's ``LLMGradientAttribution``). Every (step, path point) pair is one row of
:meth:`faithmap.Model.gradient_rows`, so all steps stream through the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval, options
from faithmap.core.targets import Target
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)
from faithmap.methods.integrated_gradients import RULES, Quadrature, quadrature


def step_targets(steps: int) -> Target:
    """A target reading column ``s`` of the scorer's ``(B, S)`` output for "sample" ``s``."""

    def column(step: int) -> Callable[[Tensor], Tensor]:
        return lambda output: output[:, step]

    return Target(score_fns=tuple(column(s) for s in range(steps)))


def path_gradients(
    task: GenerationTask, start: Tensor, end: Tensor, alphas: Tensor, weights: Tensor
) -> Tensor:
    """``sum_k weights[k] * d target_s / d e`` at ``e = start + alphas[k] (end - start)``, for
    every step ``s``: ``(S, P, D)``, one forward and one backward pass per (step, point)."""
    steps = task.steps
    total = torch.zeros(steps, *end.shape, dtype=end.dtype, device=end.device)
    difference = end - start
    alphas, weights = alphas.to(end), weights.to(end)

    def point(_: Tensor, index: Tensor) -> Tensor:
        return start + alphas[index].view(-1, 1, 1) * difference

    def accumulate(samples: Tensor, index: Tensor, _: Tensor, grads: Tensor) -> None:
        total.index_add_(0, samples, grads * weights[index].view(-1, 1, 1))

    task.model("embedding").gradient_rows(
        steps,
        alphas.shape[0],
        point,
        step_targets(steps),
        accumulate,
        activation="logits",
        device=end.device,
    )
    return total


def per_feature(task: GenerationTask, token_values: Tensor) -> Tensor:
    """``(S, P)`` token attributions summed over each feature's tokens: ``(S, F)``."""
    labels = task.features.labels.to(token_values.device)
    kept = labels >= 0
    out = token_values.new_zeros(token_values.shape[0], task.features.count)
    return out.index_add_(1, labels[kept], token_values[:, kept])


@register_generation_method("integrated_gradients")
@dataclass(frozen=True, kw_only=True)
class GenerationIntegratedGradients(GenerationMethod):
    """Integrated Gradients from the baseline prompt embeddings to the prompt's own.

    The baseline replaces every token a feature holds by the baseline embedding (tokens of no
    feature keep theirs), so per step the attributions sum to the target on the prompt minus
    the target on the fully removed prompt, up to the quadrature error (completeness).

    Parameters
    ----------
    steps : int, default=32
        Points on the path (one forward and one backward pass per step and point).
    rule : str, default="gausslegendre"
        The quadrature (:func:`faithmap.methods.integrated_gradients.quadrature`).

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "steps": [Interval(int, 1)],
        "rule": [options(RULES)],
    }

    steps: int = 32
    rule: Quadrature = "gausslegendre"

    def attribute(self, task: GenerationTask) -> Tensor:
        alphas, weights = quadrature(self.rule, self.steps)
        start, end = task.baseline_embeddings(), task.prompt_embeddings()
        gradients = path_gradients(task, start, end, alphas, weights)
        return per_feature(task, (gradients * (end - start)).sum(-1))


@register_generation_method("input_x_gradient")
@dataclass(frozen=True, kw_only=True)
class GenerationInputXGradient(GenerationMethod):
    """Input x Gradient: each step's gradient at the prompt embeddings times the embeddings,
    summed per feature (one forward and one backward pass per step).

    References
    ----------
    Shrikumar, Greenside, Kundaje, "Learning Important Features Through Propagating Activation
    Differences", ICML 2017; Denil, Demiraj, de Freitas, "Extraction of Salient Sentences from
    Labelled Documents", 2014 (gradient x embedding for text).
    """

    def attribute(self, task: GenerationTask) -> Tensor:
        embeddings = task.prompt_embeddings()
        one = torch.ones(1, dtype=torch.float64)
        gradients = path_gradients(task, embeddings, embeddings, one, one)
        return per_feature(task, (gradients * embeddings).sum(-1))
