"""Integrated Gradients and Input x Gradient on the prompt embeddings, summed per feature.

The path variable is the prompt's embedding matrix ``(P, D)``: the gradient of a step's target
with respect to it, times the embedding difference, summed over the ``D`` channels and over the
tokens of each feature (Sundararajan et al. 2017 sum embedding channels the same way; so does
Captum's ``LLMGradientAttribution``). One forward pass per path point scores every generated
step, and each step's gradient is taken from that pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval, options
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)
from faithmap.generation.scoring import EmbeddingScorer
from faithmap.methods.integrated_gradients import RULES, Quadrature, quadrature


def path_gradients(
    task: GenerationTask, start: Tensor, end: Tensor, alphas: Tensor, weights: Tensor
) -> Tensor:
    """``sum_k weights[k] * d target_s / d e`` at ``e = start + alphas[k] (end - start)``, for
    every step ``s``: ``(S, P, D)``.

    One forward pass per path point scores every step; the ``S`` gradients are taken from it
    (``S`` backward passes, counted as such), where Captum's ``LLMGradientAttribution`` runs one
    forward pass per step and point. Where the scorer split the output layer per step
    (:meth:`EmbeddingScorer.split_targets`), each backward pass starts from its step's own
    targets, so it runs the output layer on that step's slice only.
    """
    steps = task.steps
    total = torch.zeros(steps, *end.shape, dtype=end.dtype, device=end.device)
    difference = end - start
    alphas, weights = alphas.to(end), weights.to(end)
    model = task.model("embedding")
    scorer = model.module
    assert isinstance(scorer, EmbeddingScorer)  # what task.model("embedding") builds

    def point(_: Tensor, index: Tensor) -> Tensor:
        return start + alphas[index].view(-1, 1, 1) * difference

    def accumulate(_: Tensor, index: Tensor, output: Tensor) -> None:
        rows = scorer.tracked
        assert rows is not None  # set by the forward pass just run with track_inputs
        weight = weights[index].view(-1, 1, 1)
        targets = scorer.step_targets  # each step's own targets where the head was split
        for step in range(steps):
            target = output[:, step] if targets is None else targets[step]
            (grads,) = torch.autograd.grad(target.sum(), rows, retain_graph=step < steps - 1)
            total[step] += (grads * weight).sum(0)
        model.ledger.backward += rows.shape[0] * (steps - 1)  # output_rows counts one per row

    scorer.track_inputs = True
    try:
        model.output_rows(1, alphas.shape[0], point, accumulate, backward=True, device=end.device)
    finally:
        scorer.track_inputs, scorer.tracked, scorer.step_targets = False, None, None
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
        Points on the path: one forward pass per point, one backward pass per point and step.
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
    summed per feature (one forward pass, one backward pass per step).

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
