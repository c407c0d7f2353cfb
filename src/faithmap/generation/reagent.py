"""ReAGent: importance by replacing prompt tokens with a small language model's predictions.

Zhao and Shan's recursive attribution generator, per generated step ``t`` and probe ``b``:

1. Scores start as ``s ~ U(0, 1)`` on the logit scale, one per prompt feature.
2. Each update replaces a random set ``R`` of features (each with probability
   ``replacing_ratio``) by the replacer LM's predictions and measures the change of the
   generated token's probability, ``Δp = p(y_t | prompt) - p(y_t | replaced)``. Features in
   ``R`` get ``+Δp``, the others ``-Δp``, added as ``logit(Δ / 2 + 1/2)`` to ``s``.
3. The probe stops when the step's token is among the ``top_k`` predictions with only the
   ``ceil(keep_ratio · F)`` features of highest ``softmax(s)`` kept and all others replaced (the
   paper's stopping rule), or after ``max_updates``.

The attribution of a step is ``softmax(s)`` over the features, averaged over ``probes``. The
replacement of prompt token ``i`` is the replacer's most likely token after the prompt's first
``i`` tokens, other than token ``i`` itself (so a replaced token always changes; the first token
has no prefix and is never changed). The replacer is the explained model unless another causal
LM over the same token ids is given. One forward pass per probe and update, plus one per active
probe and step for the stopping rule; every step is scored by the same teacher-forced pass.

Differences from the reference code (``casszhao/ReAGent``): probes that reach ``max_updates``
without stopping are averaged too (the reference averages only stopped probes, and has none to
average when no probe stops); replacements differ from the original token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from faithmap.core.constraints import SEED, Constraints, InstanceOf, Interval
from faithmap.core.model import Model
from faithmap.errors import TargetError
from faithmap.generation.continuation import tail_scores
from faithmap.generation.language_model import CausalLM
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)


def replacement_ids(replacer: CausalLM, prompt: Tensor) -> Tensor:
    """``(P,)`` for each prompt position the replacer's most likely token after the prompt's
    earlier tokens, other than the token there; position 0 keeps its token."""
    with torch.no_grad():
        logits = replacer.logits(prompt.to(replacer.device)[None])[0, :-1].float().cpu()
    own = prompt[1:].cpu()
    logits[torch.arange(len(own)), own] = -torch.inf
    return torch.cat([prompt[:1].cpu(), logits.argmax(dim=1)])


class ReplacementScorer(nn.Module):
    """Feature keep vectors ``(B, F)`` to every step's target and rank ``(B, 2 S)``: a removed
    feature's tokens become their replacements. Columns ``0 .. S-1`` hold the log-probability
    of each step's token, ``S .. 2S-1`` how many tokens the model ranks above it."""

    def __init__(self, task: GenerationTask, replacements: Tensor) -> None:
        super().__init__()
        self.lm = task.lm
        if isinstance(task.lm.model, nn.Module):
            self.module = task.lm.model  # registered, so Model's eval mode reaches it
        self.features = task.features
        self.continuation = task.continuation
        self.replacements = replacements.to(task.device)
        self.sequence = task.continuation.inputs.to(task.device)

    def forward(self, keep: Tensor) -> Tensor:
        """Targets and ranks of every step with the features ``keep`` says kept."""
        length = len(self.continuation.prompt)
        prompt = self.sequence[:length]
        token_keep = self.features.token_keep(keep) >= 0.5
        ids = torch.where(token_keep, prompt, self.replacements)
        rest = self.sequence[length:].expand(keep.shape[0], -1)
        steps = self.continuation.steps
        logits = self.lm.logits(torch.cat([ids, rest], dim=1), last=steps)
        ids_generated = self.continuation.ids.to(logits.device)
        scores = tail_scores(logits, ids_generated, None)
        window = logits[:, -steps:]
        own = window.gather(2, ids_generated[None, :, None].expand(len(ids), -1, 1))
        ranks = (window > own).sum(dim=2).to(scores.dtype)
        return torch.cat([scores, ranks], dim=1)


@register_generation_method("reagent")
@dataclass(frozen=True, kw_only=True)
class ReAGent(GenerationMethod):
    """ReAGent (see the module docstring): model-agnostic, forward passes only.

    Parameters
    ----------
    replacer : nn.Module, CausalLM or None, default=None
        A causal LM over the same token ids that proposes replacements; ``None`` uses the
        explained model.
    probes : int, default=16
        Independent runs averaged (inseq's ``num_probes``).
    replacing_ratio : float, default=0.3
        Chance of each feature to be replaced in an update.
    keep_ratio : float, default=0.3
        Share of features kept by the stopping rule (``ceil(keep_ratio · F)``, at least one).
    top_k : int, default=3
        The stopping rule's rank: stop when the step's token is among the top ``top_k``.
    max_updates : int, default=300
        Updates at most per probe (the reference allows 3000).
    seed : int, default=0

    References
    ----------
    Zhao and Shan, "ReAGent: A Model-agnostic Feature Attribution Method for Generative
    Language Models", ReLM workshop at AAAI 2024 (arXiv:2402.00794).
    """

    parameter_constraints: ClassVar[Constraints] = {
        "replacer": [InstanceOf((nn.Module, CausalLM), "an nn.Module or CausalLM"), None],
        "probes": [Interval(int, 1)],
        "replacing_ratio": [Interval(float, 0.0, 1.0, closed="neither")],
        "keep_ratio": [Interval(float, 0.0, 1.0, closed="right")],
        "top_k": [Interval(int, 1)],
        "max_updates": [Interval(int, 1)],
        "seed": [SEED],
    }

    replacer: Any = None
    probes: int = 16
    replacing_ratio: float = 0.3
    keep_ratio: float = 0.3
    top_k: int = 3
    max_updates: int = 300
    seed: int = 0

    def attribute(self, task: GenerationTask) -> Tensor:
        if task.continuation.contrast is not None:
            raise TargetError(
                "ReAGent measures changes of the generated token's probability; contrastive "
                "targets are not supported. Explain without contrast=."
            )
        replacer = self.replacer if isinstance(self.replacer, CausalLM) else None
        if replacer is None:
            replacer = task.lm if self.replacer is None else CausalLM(self.replacer)
        replacements = replacement_ids(replacer, task.continuation.prompt.ids)
        model = Model(ReplacementScorer(task, replacements), batch_size=task.batch_size)
        task._models["reagent"] = model  # counted in the explanation's cost
        return self._search(model, task)

    def _run(self, model: Model, keep: Tensor) -> tuple[Tensor, Tensor]:
        out: list[Tensor] = []

        def consume(_: Tensor, __: Tensor, output: Tensor) -> None:
            out.append(output.detach().clone())

        model.output_rows(1, keep.shape[0], lambda _, rows: keep[rows], consume, device=keep.device)
        both = torch.cat(out).double().cpu()
        half = both.shape[1] // 2
        return both[:, :half].exp(), both[:, half:]

    def _search(self, model: Model, task: GenerationTask) -> Tensor:
        count, steps, probes = task.features.count, task.steps, self.probes
        device = task.device
        generator = torch.Generator().manual_seed(self.seed)
        full, _ = self._run(model, torch.ones(1, count, device=device))
        scores = torch.rand(probes, steps, count, generator=generator, dtype=torch.float64)
        active = torch.ones(probes, steps, dtype=torch.bool)
        kept = min(count, max(1, math.ceil(self.keep_ratio * count)))
        for _ in range(self.max_updates):
            replaced = torch.rand(probes, count, generator=generator) < self.replacing_ratio
            probability, _ = self._run(model, (~replaced).double().to(device))
            change = (full - probability)[..., None]  # (probes, steps, 1)
            delta = torch.where(replaced[:, None, :], change, -change)
            update = torch.logit(delta * 0.5 + 0.5, eps=1e-6)
            scores = scores + active[..., None] * update
            probe, step = active.nonzero(as_tuple=True)
            top = scores[probe, step].topk(kept, dim=1).indices
            keep = torch.zeros(len(probe), count, dtype=torch.float64).scatter_(1, top, 1.0)
            _, ranks = self._run(model, keep.to(device))
            stopped = ranks[torch.arange(len(probe)), step] < self.top_k
            active[probe[stopped], step[stopped]] = False
            if not active.any():
                break
        return scores.softmax(dim=2).mean(dim=0).float()
