"""Sentence importance by resampling: Thought Anchors' counterfactual importance.

The prompt is read as a trace (a question and the model's own reasoning) cut into features
(sentences, usually); the continuation is the outcome (the answer). For each feature ``i``
spanning tokens ``[a, b)``:

- **with** ``i``: keep the trace up to ``b`` and sample everything after it, the rest of the
  trace and the continuation, ``samples`` times;
- **without** ``i``: keep the trace up to ``a`` and sample from there, so feature ``i`` is
  resampled too; only the *counterfactual* rollouts, whose resampled tokens at ``[a, b)``
  differ from the feature's own, are kept (Thought Anchors keeps resampled sentences of cosine
  similarity below a threshold; with token ids, different tokens).

Step ``t``'s importance of feature ``i`` compares the distributions of the token sampled at step
``t`` in the two conditions: ``"kl"``, ``KL(without || with)`` over the tokens seen, with
``smoothing`` added to every count, or ``"accuracy"``, how much more often the step's own token
comes *with* the feature than without it. A feature no rollout regenerates differently has no
counterfactual and scores 0; so does a feature starting at the first token (nothing to sample
it from). Every rollout has the original length: all features, conditions and samples are
sampled together, one forward pass per row and position, from a seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from faithmap.core.constraints import SEED, Constraints, Interval, options
from faithmap.core.model import Model
from faithmap.errors import InvalidParameterError
from faithmap.generation.language_model import CausalLM
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)


class NextTokenLogits(nn.Module):
    """Token ids stored as floats ``(B, L)`` to the logits of the next token ``(B, V)``."""

    def __init__(self, lm: CausalLM) -> None:
        super().__init__()
        self.lm = lm
        if isinstance(lm.model, nn.Module):
            self.module = lm.model  # registered, so Model's eval mode reaches it

    def forward(self, ids: Tensor) -> Tensor:
        """The last position's logits."""
        return self.lm.logits(ids.round().long())[:, -1].float()


def next_logits(model: Model, prefixes: Tensor) -> Tensor:
    """Next-token logits ``(B, V)`` of prefixes ``(B, L)`` through ``model``, in batches."""
    out: list[Tensor] = []

    def consume(_: Tensor, __: Tensor, output: Tensor) -> None:
        out.append(output.detach().clone())

    model.output_rows(
        1, prefixes.shape[0], lambda _, rows: prefixes[rows], consume, device=prefixes.device
    )
    return torch.cat(out)


def feature_spans(labels: Tensor, count: int) -> list[tuple[int, int]]:
    """``[a, b)`` token span of each feature; a feature's tokens must be adjacent."""
    spans = []
    for feature in range(count):
        where = (labels == feature).nonzero()[:, 0]
        start, end = int(where.min()), int(where.max()) + 1
        if len(where) != end - start:
            raise InvalidParameterError(
                f"Resampling regenerates from a feature's first token, so each feature's tokens "
                f"must be adjacent; feature {feature} holds tokens {where.tolist()}. Use "
                "features='sentences', 'words', 'tokens' or spans."
            )
        spans.append((start, end))
    return spans


def smoothed_kl(first: Tensor, second: Tensor, smoothing: float) -> Tensor:
    """``KL(first || second)`` of count vectors ``(..., V)``: the unsmoothed shares of
    ``first`` times the log-ratio of both smoothed over the tokens either saw; 0 where
    ``first`` has no count."""
    seen = (first + second) > 0
    kinds = seen.sum(-1, keepdim=True)
    p = (first + smoothing) / (first.sum(-1, keepdim=True) + smoothing * kinds)
    q = (second + smoothing) / (second.sum(-1, keepdim=True) + smoothing * kinds)
    share = first / first.sum(-1, keepdim=True).clamp(min=1)
    terms = torch.where(seen & (first > 0), share * (p / q).log(), torch.zeros_like(p))
    return terms.sum(-1).clamp(min=0)


@register_generation_method("resampling")
@dataclass(frozen=True, kw_only=True)
class SentenceResampling(GenerationMethod):
    """Counterfactual importance of prompt features by resampling (see the module docstring).

    Parameters
    ----------
    samples : int, default=32
        Rollouts per feature and condition.
    temperature : float, default=1.0
    measure : {"kl", "accuracy"}, default="kl"
    smoothing : float, default=1.0
        Added to every token count of the KL divergence.
    seed : int, default=0

    References
    ----------
    Bogdan, Macar, Nanda, Conmy, "Thought Anchors: Which LLM Reasoning Steps Matter?",
    arXiv:2506.19143, 2025 (resampling and counterfactual importance).
    """

    parameter_constraints: ClassVar[Constraints] = {
        "samples": [Interval(int, 1)],
        "temperature": [Interval(float, 0.0, closed="right")],
        "measure": [options(("kl", "accuracy"))],
        "smoothing": [Interval(float, 0.0, closed="right")],
        "seed": [SEED],
    }

    samples: int = 32
    temperature: float = 1.0
    measure: str = "kl"
    smoothing: float = 1.0
    seed: int = 0

    def attribute(self, task: GenerationTask) -> Tensor:
        count, steps = task.features.count, task.steps
        spans = feature_spans(task.features.labels.cpu(), count)
        sequence = task.continuation.sequence.cpu()
        length = len(task.continuation.prompt)
        # rows: feature-major, then condition (with, without), then sample
        starts = torch.tensor([[end, start] for start, end in spans]).repeat_interleave(
            self.samples, dim=1
        )
        starts = starts.flatten()
        rollouts = self._sample(task, sequence, starts)
        rollouts = rollouts.view(count, 2, self.samples, -1)
        answers = rollouts[..., length:]  # (F, 2, samples, S)
        vocabulary = int(max(int(sequence.max()), int(rollouts.max()))) + 1
        attributions = torch.zeros(steps, count, dtype=torch.float64)
        for feature, (start, end) in enumerate(spans):
            if start == 0:
                continue
            without = rollouts[feature, 1, :, start:end]
            different = (without != sequence[start:end]).any(dim=1)
            if not different.any():
                continue
            kept = answers[feature, 0]  # (samples, S)
            counter = answers[feature, 1][different]
            attributions[:, feature] = self._compare(kept, counter, sequence[length:], vocabulary)
        return attributions.float()

    def _compare(self, kept: Tensor, counter: Tensor, own: Tensor, vocabulary: int) -> Tensor:
        if self.measure == "accuracy":
            return (kept == own).double().mean(0) - (counter == own).double().mean(0)
        with_counts = torch.zeros(kept.shape[1], vocabulary, dtype=torch.float64)
        with_counts.scatter_add_(1, kept.T, torch.ones(kept.T.shape, dtype=torch.float64))
        without_counts = torch.zeros_like(with_counts)
        without_counts.scatter_add_(1, counter.T, torch.ones(counter.T.shape, dtype=torch.float64))
        return smoothed_kl(without_counts, with_counts, self.smoothing)

    def _sample(self, task: GenerationTask, sequence: Tensor, starts: Tensor) -> Tensor:
        """Rollouts ``(R, P + S)``: row ``r`` keeps ``sequence[:starts[r]]``, samples the rest."""
        model = Model(NextTokenLogits(task.lm), batch_size=task.batch_size)
        task._models["resampling"] = model  # counted in the explanation's cost
        generator = torch.Generator().manual_seed(self.seed)
        rows = sequence.expand(len(starts), -1).clone()
        device = task.device
        for position in range(max(1, int(starts.min())), len(sequence)):
            sampled = starts <= position
            if not sampled.any():
                continue
            prefixes = rows[sampled, :position].double().to(device)
            logits = next_logits(model, prefixes).double().cpu() / self.temperature
            drawn = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            rows[sampled, position] = drawn
        return rows
