"""Token-level insertion and deletion curves of each generated token's target.

For step ``t``, the prompt's features are ordered by the step's attributions (largest first).
The deletion curve removes them one by one from the whole prompt, the insertion curve adds them
one by one to the fully removed prompt; each point is the step's target (the log-probability of
the generated token, or the contrastive difference) after ``j`` features, ``j = 0 .. F``. The
area under each curve over the fraction ``j / F`` (trapezoid rule) sums it up: a faithful
explanation gives a high insertion and a low deletion area.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.core.validation import check_choice
from faithmap.generation.explain import LanguageModelLike
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.faithfulness import metric_task, own_steps, step_orders
from faithmap.generation.scoring import BaselineSpec


@dataclass(frozen=True)
class StepCurves:
    """Insertion or deletion curves of every generated step.

    Attributes
    ----------
    kind : str
        ``"insertion"`` or ``"deletion"``.
    curves : Tensor
        ``(S, F + 1)`` the step's target after ``0 .. F`` features inserted or deleted.
    fractions : Tensor
        ``(F + 1,)`` ``j / F``.
    auc : Tensor
        ``(S,)`` trapezoid area of each curve over ``fractions``.
    cost : Cost
    """

    kind: str
    curves: Tensor
    fractions: Tensor
    auc: Tensor
    cost: Cost = field(default_factory=Cost)

    @property
    def higher_is_better(self) -> bool:
        """Insertion: higher is better; deletion: lower."""
        return self.kind == "insertion"


def step_curves(
    model: LanguageModelLike,
    explanation: GenerationExplanation,
    *,
    kind: str = "deletion",
    baseline: BaselineSpec | None = None,
    batch_size: int | None = None,
) -> StepCurves:
    """Insertion or deletion curves of every step of ``explanation``.

    ``1 + S * F`` forward passes (the full and the empty prompt are shared by every step).

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018 (insertion and deletion); Zhao and Shan, "ReAGent: A Model-agnostic
    Feature Attribution Method for Generative Language Models", ReLM workshop, AAAI 2024
    (token-level evaluation of generation explanations).
    """
    check_choice(kind, "kind", "step_curves", ("insertion", "deletion"))
    task = metric_task(model, explanation, baseline=baseline, batch_size=batch_size)
    order = step_orders(explanation)
    steps, count = order.shape
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(count).expand(steps, -1))
    # row (t, j) holds the top-j features of step t, j = 1 .. F - 1
    top = ranks[:, None, :] < torch.arange(1, count)[None, :, None]
    inside = top.double()
    keep = 1.0 - inside if kind == "deletion" else inside
    ends = torch.stack([torch.ones(count), torch.zeros(count)]).double()
    scores = task.score_keeps(torch.cat([ends, keep.reshape(-1, count)])).double().cpu()
    middle = own_steps(scores[2:], torch.arange(steps).repeat_interleave(count - 1))
    first, last = (0, 1) if kind == "deletion" else (1, 0)
    curves = torch.cat(
        [scores[first][:, None], middle.view(steps, count - 1), scores[last][:, None]], dim=1
    )
    fractions = torch.linspace(0.0, 1.0, count + 1, dtype=torch.float64)
    auc = torch.trapezoid(curves, fractions, dim=1)
    return StepCurves(kind, curves.float(), fractions.float(), auc.float(), task.cost())
