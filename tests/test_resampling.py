"""Sentence importance by resampling: the smoothed KL by hand, a model with a known dependency,
determinism, cost and refusals."""

from __future__ import annotations

import math

import pytest
import torch

from faithmap.errors import InvalidParameterError
from faithmap.generation import explain_generation
from faithmap.generation.resampling import SentenceResampling, smoothed_kl
from generation_standins import PointerLm

PROMPT = [5, 6, 7, 8, 9]


def test_smoothed_kl_by_hand() -> None:
    first = torch.tensor([[2.0, 0.0, 1.0, 0.0]])
    second = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # three tokens seen, one pseudo-count each: p = (3, 1, 2) / 6, q = (2, 2, 1) / 5; the
    # unsmoothed shares of the first weight the log-ratios
    expected = 2 / 3 * math.log((3 / 6) / (2 / 5)) + 1 / 3 * math.log((2 / 6) / (1 / 5))
    assert smoothed_kl(first, second, 1.0).item() == pytest.approx(expected)
    assert smoothed_kl(second, second, 1.0).item() == 0.0
    assert smoothed_kl(torch.zeros(1, 4), second, 1.0).item() == 0.0  # no counterfactual


def test_the_copied_token_is_the_anchor() -> None:
    # the answer copies token 2; earlier tokens are sampled uniformly, later ones copy token 2
    model = PointerLm(source=2)
    method = SentenceResampling(samples=24, measure="accuracy", seed=0)
    exp = explain_generation(model, PROMPT, method=method, continuation=[7], features="tokens")
    # with token 2 the answer is always 7; resampled to another token, never
    assert exp.attributions[0, 2].item() == 1.0
    # after token 2 both conditions keep it: the same answer, importance 0; the first token has
    # nothing to be resampled from: 0
    assert exp.attributions[0, 3:].tolist() == [0.0, 0.0]
    assert exp.attributions[0, 0].item() == 0.0
    # token 1: both conditions resample token 2, each answer is right about 1 time in 10
    assert abs(exp.attributions[0, 1].item()) < 0.5
    kl = SentenceResampling(samples=24, seed=0)
    by_kl = explain_generation(model, PROMPT, method=kl, continuation=[7], features="tokens")
    assert by_kl.attributions.argmax().item() == 2
    assert by_kl.attributions[0, 3:].tolist() == [0.0, 0.0]


def test_same_seed_same_values_and_cost() -> None:
    model = PointerLm(source=2, strength=1.0)

    def run(seed: int) -> torch.Tensor:
        method = SentenceResampling(samples=4, seed=seed)
        exp = explain_generation(model, PROMPT, method=method, continuation=[7], features="tokens")
        # rows sampled at position p: every (feature, condition) pair starting at or before p
        starts = [s for f in range(5) for s in (f + 1, f)]
        rows = sum(4 * sum(1 for s in starts if s <= p) for p in range(1, 6))
        assert exp.cost.forward == rows + 1
        return exp.attributions

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(3))


def test_features_must_be_adjacent_tokens() -> None:
    labels = torch.tensor([0, 1, 0, 2, 3])
    with pytest.raises(InvalidParameterError, match="adjacent"):
        explain_generation(
            PointerLm(source=2),
            PROMPT,
            method=SentenceResampling(),
            continuation=[7],
            features=labels,
        )
    with pytest.raises(InvalidParameterError, match="measure"):
        SentenceResampling(measure="entropy")
