"""Per-step comprehensiveness and sufficiency of a generation explanation, hard and soft.

For generated step ``t`` with target probability ``p_t(x)`` on the whole prompt and attribution
row ``a_t`` over the prompt's ``F`` features:

- **comprehensiveness** (ERASER): ``p_t(x) - p_t(x without its top-k features)``, averaged over
  ``k = ceil(f F)`` for each fraction ``f`` of ``fractions`` (ERASER's AOPC over bins
  1, 5, 10, 20, 50 %). Higher is better: the features ranked first carry the prediction.
- **sufficiency** (ERASER): ``p_t(x) - p_t(only the top-k features)``, averaged the same way.
  Lower is better.
- **soft comprehensiveness / sufficiency** (Zhao and Aletras 2023): every element of a
  feature's embedding is kept with probability ``1 - â`` (comprehensiveness) or ``â``
  (sufficiency), ``â`` the row min–max scaled to [0, 1] (0.5 everywhere for a constant row);
  Soft-C = ``max(0, p(x) - p(x'))``, Soft-S = ``1 - max(0, p(x) - p(x'))``, averaged over
  ``samples`` draws. Normalised (the default) by the null sufficiency
  ``S0 = 1 - max(0, p(x) - p(nothing kept))`` as Carton et al. 2020 do: Soft-NC = Soft-C /
  (1 - S0), Soft-NS = max(0, Soft-S - S0) / (1 - S0); ``nan`` where removing every feature
  does not lower the probability (``1 - S0 = 0``: nothing to normalise by).

A removed element takes the baseline embedding's value (the explanation's own baseline unless
``baseline=`` is given; ``"zero"`` is the paper's dropout). The scores are probabilities, so
contrastive explanations are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError, ShapeError, TargetError
from faithmap.generation.explain import LanguageModelLike, as_causal_lm
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.method import GenerationTask
from faithmap.generation.scoring import BaselineSpec, make_baseline

ERASER_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)
"""ERASER's bins of top-ranked features (DeYoung et al. 2020, section 4)."""


@dataclass(frozen=True)
class StepMetric:
    """A metric's value at every generated step.

    Attributes
    ----------
    name : str
    values : Tensor
        ``(S,)`` one value per step (``nan`` where it is undefined).
    higher_is_better : bool
    choices : dict
        Every number-changing choice (fractions, baseline, samples, seed).
    cost : Cost
        Forward passes (one per scored row) and seconds.
    """

    name: str
    values: Tensor
    higher_is_better: bool
    choices: dict[str, Any] = field(default_factory=dict)
    cost: Cost = field(default_factory=Cost)

    @property
    def mean(self) -> float:
        """The mean over steps where the metric is defined."""
        return float(self.values.nanmean())


def metric_task(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> GenerationTask:
    """The task an explanation explained, to be scored again: same continuation, features and
    (unless given) baseline."""
    if not isinstance(explanation, GenerationExplanation):
        raise InvalidParameterError(
            "A generation metric takes a GenerationExplanation (from explain_generation). Got "
            f"{type(explanation).__name__} instead."
        )
    lm = as_causal_lm(model)
    spec = explanation.config.get("baseline", "zero") if baseline is None else baseline
    return GenerationTask(
        lm, explanation.continuation, explanation.features, make_baseline(lm, spec), batch_size
    )


def step_orders(explanation: GenerationExplanation) -> Tensor:
    """``(S, F)`` each step's features from the largest attribution to the smallest (ties by
    feature index)."""
    attributions = explanation.attributions
    if attributions.dim() != 2 or attributions.shape != (
        explanation.continuation.steps,
        explanation.features.count,
    ):
        raise ShapeError(
            "The explanation's attributions must be (steps, features) = "
            f"({explanation.continuation.steps}, {explanation.features.count}). Got "
            f"{tuple(attributions.shape)}."
        )
    if not torch.isfinite(attributions).all():
        raise ShapeError("The explanation's attributions hold NaN or inf; no order to score.")
    return torch.argsort(-attributions.double(), dim=1, stable=True)


def own_steps(scores: Tensor, steps: Tensor) -> Tensor:
    """Row ``r``'s target at its own step ``steps[r]`` from all-step targets ``(R, S)``."""
    return scores.gather(1, steps.to(scores.device)[:, None])[:, 0]


def _require_probabilities(explanation: GenerationExplanation, owner: str) -> None:
    if explanation.continuation.contrast is not None:
        raise TargetError(
            f"{owner} compares probabilities of the generated token, but this explanation has "
            "contrastive targets (log p(A) - log p(B)). Explain without contrast=, or use "
            "insertion/deletion curves, which read any target."
        )


def _fractions(fractions: Sequence[float], owner: str) -> list[float]:
    checked = [float(f) for f in fractions]
    if not checked or any(not 0.0 < f <= 1.0 for f in checked):
        raise InvalidParameterError(
            f"The 'fractions' parameter of {owner} must be a non-empty list of numbers in (0, 1]. "
            f"Got {list(fractions)!r} instead."
        )
    return checked


def _eraser(
    name: str,
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    fractions: Sequence[float],
    baseline: BaselineSpec | None,
    batch_size: int | None,
) -> StepMetric:
    _require_probabilities(explanation, name)
    checked = _fractions(fractions, name)
    task = metric_task(model, explanation, baseline=baseline, batch_size=batch_size)
    order = step_orders(explanation)
    steps, count = order.shape
    sizes = [min(count, max(1, math.ceil(f * count))) for f in checked]
    ranked = torch.zeros(steps, len(sizes), count)
    for j, size in enumerate(sizes):
        ranked[:, j].scatter_(1, order[:, :size], 1.0)  # 1 on the top-k features
    keep = 1.0 - ranked if name == "comprehensiveness" else ranked
    rows = torch.cat([torch.ones(1, count), keep.reshape(-1, count)])
    scores = task.score_keeps(rows).double().exp().cpu()
    full = scores[0]
    own = own_steps(scores[1:], torch.arange(steps).repeat_interleave(len(sizes)))
    values = (full[:, None] - own.view(steps, len(sizes))).mean(dim=1)
    choices = {"fractions": checked, "sizes": sizes, "baseline": task.baseline.spec}
    return StepMetric(name, values.float(), name == "comprehensiveness", choices, task.cost())


def comprehensiveness(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    fractions: Sequence[float] = ERASER_FRACTIONS,
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> StepMetric:
    """ERASER comprehensiveness of every step (see the module docstring); higher is better.

    ``1 + S * len(fractions)`` forward passes.

    References
    ----------
    DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL 2020.
    """
    return _eraser("comprehensiveness", model, explanation, fractions, baseline, batch_size)


def sufficiency(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    fractions: Sequence[float] = ERASER_FRACTIONS,
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> StepMetric:
    """ERASER sufficiency of every step (see the module docstring); lower is better.

    References
    ----------
    DeYoung et al., "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL 2020.
    """
    return _eraser("sufficiency", model, explanation, fractions, baseline, batch_size)


def scaled_importance(attributions: Tensor) -> Tensor:
    """Each row min–max scaled to [0, 1]; 0.5 everywhere in a constant row."""
    low = attributions.min(dim=1, keepdim=True).values
    span = attributions.max(dim=1, keepdim=True).values - low
    scaled = (attributions - low) / span.clamp(min=torch.finfo(attributions.dtype).tiny)
    return torch.where(span > 0, scaled, torch.full_like(scaled, 0.5))


def score_embeddings(task: GenerationTask, embeddings: Tensor) -> Tensor:
    """All-step targets ``(C, S)`` of prompt embeddings ``(C, P, D)``, batched by
    :class:`faithmap.Model` (one forward pass per row)."""
    out: list[Tensor] = []

    def consume(_: Tensor, __: Tensor, output: Tensor) -> None:
        out.append(output.detach().clone())

    task.model("embedding").output_rows(
        1, embeddings.shape[0], lambda _, rows: embeddings[rows], consume, device=task.device
    )
    return torch.cat(out)


def _soft(
    name: str,
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    samples: int,
    normalised: bool,
    seed: int,
    baseline: BaselineSpec | None,
    batch_size: int | None,
) -> StepMetric:
    _require_probabilities(explanation, name)
    check_int(samples, "samples", name, low=1)
    check_int(seed, "seed", name, low=0)
    task = metric_task(model, explanation, baseline=baseline, batch_size=batch_size)
    step_orders(explanation)  # checks the shape and values
    task.lm.require_embeddings(f"{name} (it drops embedding elements)")
    own = task.prompt_embeddings()
    fill = task.baseline.embedding
    assert fill is not None  # a module's baseline has its embedding
    labels = explanation.features.labels.to(own.device)
    scaled = scaled_importance(explanation.attributions.double().cpu())
    chance = 1.0 - scaled if name == "soft_comprehensiveness" else scaled
    steps = chance.shape[0]
    generator = torch.Generator().manual_seed(seed)
    token_chance = torch.cat([chance, torch.ones(steps, 1, dtype=chance.dtype)], dim=1)
    token_chance = token_chance[:, torch.where(labels < 0, chance.shape[1], labels).cpu()]
    draws = token_chance.repeat_interleave(samples, dim=0)[..., None].expand(-1, -1, own.shape[1])
    kept = torch.bernoulli(draws, generator=generator).to(own.device, own.dtype)
    blended = fill + kept * (own - fill)
    ends = torch.stack([own, task.baseline_embeddings()])
    scores = score_embeddings(task, torch.cat([ends, blended])).double().exp().cpu()
    full, empty = scores[0], scores[1]
    rows = own_steps(scores[2:], torch.arange(steps).repeat_interleave(samples))
    drop = (full.repeat_interleave(samples) - rows).clamp(min=0).view(steps, samples).mean(1)
    null = 1.0 - (full - empty).clamp(min=0)
    if name == "soft_comprehensiveness":
        values = drop / (1.0 - null) if normalised else drop
    else:
        values = (1.0 - drop - null).clamp(min=0) / (1.0 - null) if normalised else 1.0 - drop
    values = torch.where(torch.isinf(values), torch.nan, values)
    choices = {
        "samples": samples,
        "seed": seed,
        "normalised": normalised,
        "baseline": task.baseline.spec,
    }
    better = name == "soft_comprehensiveness"
    return StepMetric(name, values.float(), better, choices, task.cost())


def soft_comprehensiveness(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    samples: int = 8,
    normalised: bool = True,
    seed: int = 0,
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> StepMetric:
    """Soft (normalised) comprehensiveness of every step; higher is better.

    ``2 + S * samples`` forward passes. Needs a model with embeddings.

    References
    ----------
    Zhao and Aletras, "Incorporating Attribution Importance for Improving Faithfulness
    Metrics", ACL 2023; Carton, Rathore, Tan, "Evaluating and Characterizing Human Rationales",
    EMNLP 2020 (normalisation by the null sufficiency).
    """
    return _soft(
        "soft_comprehensiveness",
        model,
        explanation,
        samples,
        normalised,
        seed,
        baseline,
        batch_size,
    )


def soft_sufficiency(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    samples: int = 8,
    normalised: bool = True,
    seed: int = 0,
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> StepMetric:
    """Soft (normalised) sufficiency of every step; higher is better (it is ``1 -`` a drop).

    References
    ----------
    Zhao and Aletras, "Incorporating Attribution Importance for Improving Faithfulness
    Metrics", ACL 2023.
    """
    return _soft(
        "soft_sufficiency", model, explanation, samples, normalised, seed, baseline, batch_size
    )
