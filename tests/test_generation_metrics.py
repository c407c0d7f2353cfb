"""Generation metrics against values computed by hand on a model with known probabilities.

``CumulativeLm`` embeds each token as one number and reads, at every position, logits
``[0, h, 0, 0]`` with ``h`` the sum of the embeddings so far: token 1 has probability
``e^h / (e^h + 3)``, every other token ``1 / (e^h + 3)``. With the zero baseline a removed token
adds nothing to ``h``, so every expected value below is a few exponentials.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import Tensor, nn

from faithmap.errors import InvalidParameterError, ShapeError, TargetError
from faithmap.generation import GenerationExplanation, explain_generation
from faithmap.generation.agreement import agreement, spearman
from faithmap.generation.faithfulness import (
    comprehensiveness,
    soft_comprehensiveness,
    soft_sufficiency,
    sufficiency,
)
from faithmap.generation.step_curves import step_curves

EMBEDDINGS = (0.0, 1.0, 2.0, -1.0)
"""The one-number embedding of tokens 0 .. 3."""


class CumulativeLm(nn.Module):
    """Logits ``[0, h, 0, 0]`` with ``h`` the running sum of one-number embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(4, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor(EMBEDDINGS)[:, None])

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embedding(ids)[..., 0].cumsum(dim=1)
        zero = torch.zeros_like(h)
        return torch.stack([zero, h, zero, zero], dim=-1)


def p_one(h: float) -> float:
    """Probability of token 1 after running sum ``h``."""
    return math.exp(h) / (math.exp(h) + 3)


def p_other(h: float) -> float:
    """Probability of any other token after running sum ``h``."""
    return 1 / (math.exp(h) + 3)


def explained(
    prompt: list[int], continuation: list[int], rows: list[list[float]]
) -> GenerationExplanation:
    """An explanation of ``continuation`` after ``prompt`` (token features, zero baseline) whose
    attributions are ``rows``."""
    exp = explain_generation(
        CumulativeLm(), prompt, continuation=continuation, features="tokens", baseline="zero"
    )
    return dataclasses.replace(exp, attributions=torch.tensor(rows))


PROMPT = [1, 2, 3]  # embeddings 1, 2, -1: h = 2 after the prompt


def test_comprehensiveness_and_sufficiency_by_hand() -> None:
    # step 0 predicts token 1 after the prompt; step 1 predicts token 2 after prompt + token 1
    exp = explained(PROMPT, [1, 2], [[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    model = CumulativeLm()
    comp = comprehensiveness(model, exp, fractions=(1 / 3, 2 / 3))
    # step 0: top-1 = feature 1 (2.0) removed -> h = 0; top-2 = features 1, 2 removed -> h = 1
    step0 = p_one(2) - (p_one(0) + p_one(1)) / 2
    # step 1 (h adds the continuation's token 1): top-1 = feature 0 (1.0) -> h = 2; top-2 also
    # removes feature 2 (-1.0) -> h = 3
    step1 = p_other(3) - (p_other(2) + p_other(3)) / 2
    assert comp.values.tolist() == pytest.approx([step0, step1], abs=1e-6)
    assert comp.higher_is_better
    assert comp.choices["sizes"] == [1, 2]
    suff = sufficiency(model, exp, fractions=(1 / 3, 2 / 3))
    # step 0 keeps feature 1 (h = 2), then features 1, 2 (h = 1)
    assert suff.values[0].item() == pytest.approx(p_one(2) - (p_one(2) + p_one(1)) / 2, abs=1e-6)
    # step 1 keeps feature 0 (h = 1 + 1), then features 0, 2 (h = 1 - 1 + 1)
    expected1 = p_other(3) - (p_other(2) + p_other(1)) / 2
    assert suff.values[1].item() == pytest.approx(expected1, abs=1e-6)
    assert comp.cost.forward == 1 + 2 * 2


def test_perfect_and_worst_explanations() -> None:
    # only feature 0 moves h (tokens 0 embed as 0): the perfect ranking puts it first
    prompt = [2, 0, 0, 0]
    model = CumulativeLm()
    perfect = explained(prompt, [1], [[1.0, 0.0, 0.0, 0.0]])
    worst = explained(prompt, [1], [[0.0, 1.0, 1.0, 1.0]])
    fractions = (0.25, 0.5, 0.75)
    drop = p_one(2) - p_one(0)
    assert comprehensiveness(model, perfect, fractions=fractions).mean == pytest.approx(drop)
    assert comprehensiveness(model, worst, fractions=fractions).mean == pytest.approx(0.0)
    assert sufficiency(model, perfect, fractions=fractions).mean == pytest.approx(0.0)
    assert sufficiency(model, worst, fractions=fractions).mean == pytest.approx(drop)
    # binary attributions make the soft metrics' draws certain: the hard values, normalised
    assert soft_comprehensiveness(model, perfect).mean == pytest.approx(1.0)
    assert soft_comprehensiveness(model, worst).mean == pytest.approx(0.0)
    assert soft_sufficiency(model, perfect).mean == pytest.approx(1.0)
    assert soft_sufficiency(model, worst).mean == pytest.approx(0.0)
    raw = soft_comprehensiveness(model, perfect, normalised=False)
    assert raw.mean == pytest.approx(drop)
    assert soft_sufficiency(model, perfect, normalised=False).mean == pytest.approx(1.0)


def test_soft_metrics_by_hand_with_a_half_kept_feature() -> None:
    # scaled importance [1, 0.5, 0]: comprehensiveness drops feature 0, keeps feature 2 and
    # keeps feature 1 (embedding 2) with probability 0.5
    exp = explained([1, 2, 3], [1], [[4.0, 3.0, 2.0]])
    model = CumulativeLm()
    samples = 400
    soft = soft_comprehensiveness(model, exp, samples=samples, normalised=False, seed=3)
    # kept: h = 2 - 1 = 1, dropped: h = -1 (feature 2 always kept)
    expected = 0.5 * (p_one(2) - p_one(1)) + 0.5 * (p_one(2) - p_one(-1))
    # a mean of 400 fair coin flips between two values: 4 standard errors
    spread = 0.5 * abs(p_one(1) - p_one(-1)) / math.sqrt(samples)
    assert soft.values[0].item() == pytest.approx(expected, abs=4 * spread)
    assert soft.cost.forward == 2 + samples


def test_a_model_that_ignores_the_prompt_scores_zero_and_nan_when_normalised() -> None:
    exp = explained([0, 0, 0], [1], [[3.0, 2.0, 1.0]])
    model = CumulativeLm()
    assert comprehensiveness(model, exp).mean == 0.0
    assert sufficiency(model, exp).mean == 0.0
    assert math.isnan(soft_comprehensiveness(model, exp).values[0].item())
    assert math.isnan(soft_sufficiency(model, exp).values[0].item())


def test_deletion_and_insertion_curves_by_hand() -> None:
    exp = explained(PROMPT, [1], [[0.1, 0.9, 0.5]])  # order: features 1, 2, 0
    model = CumulativeLm()
    deletion = step_curves(model, exp, kind="deletion")
    # remove 2.0, then -1.0, then 1.0 from h = 2
    expected = [math.log(p_one(h)) for h in (2, 0, 1, 0)]
    assert deletion.curves[0].tolist() == pytest.approx(expected, abs=1e-6)
    fractions = [0, 1 / 3, 2 / 3, 1]
    assert deletion.fractions.tolist() == pytest.approx(fractions)
    area = sum((expected[i] + expected[i + 1]) / 2 / 3 for i in range(3))
    assert deletion.auc[0].item() == pytest.approx(area, abs=1e-6)
    insertion = step_curves(model, exp, kind="insertion")
    inserted = [math.log(p_one(h)) for h in (0, 2, 1, 2)]
    assert insertion.curves[0].tolist() == pytest.approx(inserted, abs=1e-6)
    assert insertion.higher_is_better and not deletion.higher_is_better
    assert deletion.cost.forward == 2 + 1 * 2


def test_spearman_by_hand() -> None:
    first = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 1.0, 2.0], [5.0, 5.0, 5.0]])
    second = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    rho = spearman(first, second)
    # 1 - 6 * sum(d^2) / (n (n^2 - 1)) without ties; average ranks 1.5, 1.5, 3 with ties
    assert rho[:3].tolist() == pytest.approx([-1.0, 1 - 6 * 2 / 24, 1.5 / math.sqrt(1.5 * 2)])
    assert math.isnan(rho[3].item())


def test_agreement_matrix() -> None:
    a = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]])
    b = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    result = agreement({"a": a, "b": b, "c": b.clone()})
    assert result.names == ["a", "b", "c"]
    # the constant second row of a is left out of a's means
    expected = [1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0]
    assert result.matrix.flatten().tolist() == pytest.approx(expected)
    assert result.per_step.shape == (3, 3, 2)
    with pytest.raises(InvalidParameterError, match="at least two"):
        agreement({"a": a})
    with pytest.raises(ShapeError, match="same shape"):
        agreement({"a": a, "b": torch.zeros(2, 4)})


def test_refusals() -> None:
    model = CumulativeLm()
    exp = explained(PROMPT, [1], [[0.1, 0.9, 0.5]])
    with pytest.raises(InvalidParameterError, match="fractions"):
        comprehensiveness(model, exp, fractions=(0.0,))
    with pytest.raises(InvalidParameterError, match="kind"):
        step_curves(model, exp, kind="sideways")
    with pytest.raises(ShapeError, match="NaN"):
        sufficiency(
            model, dataclasses.replace(exp, attributions=torch.tensor([[0.0, math.nan, 1.0]]))
        )
    contrastive = explain_generation(
        model, PROMPT, continuation=[1], contrast=2, features="tokens", baseline="zero"
    )
    with pytest.raises(TargetError, match="contrastive"):
        comprehensiveness(model, contrastive)
    # curves read any target: the contrastive one is log p(1) - log p(2) = h
    curves = step_curves(
        model, dataclasses.replace(contrastive, attributions=torch.tensor([[0.1, 0.9, 0.5]]))
    )
    assert curves.curves[0].tolist() == pytest.approx([2.0, 0.0, 1.0, 0.0], abs=1e-6)
