"""Sobol attribution: total indices of an additive model match the analytic values."""

from __future__ import annotations

import torch
from torch import nn

import faithmap
from faithmap.methods.sobol import jansen_total_indices, replicated_design

COEFFICIENTS = torch.tensor([1.0, 2.0, 3.0, 0.5], dtype=torch.float64)
LABELS = torch.arange(16).view(4, 4) // 4  # four regions: the rows of a 4x4 image


class Additive(nn.Module):
    """``f = sum_i a_i z_i`` where ``z_i`` is the kept level of row ``i`` (inputs are ones)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = x[:, 0].mean(2)
        return torch.stack([levels @ COEFFICIENTS, levels.sum(1)], 1)


def test_total_indices_of_an_additive_model_are_the_analytic_ones() -> None:
    # z_i ~ U(0, 1) independently: ST_i = a_i^2 / sum_j a_j^2 (no interactions)
    x = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    result = faithmap.explain(
        Additive(),
        x,
        method="sobol",
        regions=LABELS,
        target=0,
        n_design=1024,
        activation="logits",
    )
    expected = COEFFICIENTS**2 / (COEFFICIENTS**2).sum()
    torch.testing.assert_close(
        result.attributions[:, 0, :, 0], expected.expand(2, 4), atol=1e-3, rtol=0
    )
    assert result.cost.forward == 2 * 1024 * (4 + 2)


def test_the_design_is_a_scrambled_sobol_sequence_in_the_unit_cube() -> None:
    a, b = replicated_design(5, 64, seed=0)
    assert a.shape == b.shape == (64, 5)
    assert bool(((a >= 0) & (a < 1)).all()) and not torch.equal(a, b)
    # a Sobol net of 64 points puts exactly 32 in each half of every axis
    assert bool(((a < 0.5).sum(0) == 32).all())


def test_total_indices_stay_finite_when_a_and_b_score_alike() -> None:
    # A saturating model (a softmax at 1) scored A and B identically while C_1 differed: the
    # variance over A and B alone was 0 and the index infinite (the default bench's NaN map).
    # Over all six scores (mean 5/6): Var = 5/36, ST = (1 - 0)^2 / (2 * 2 * 5/36) = 1.8.
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    total = jansen_total_indices(scores, 2)
    torch.testing.assert_close(total, torch.tensor([[1.8]], dtype=torch.float64))


def test_constant_scores_give_zero_indices() -> None:
    scores = torch.full((2, 4 * (3 + 2)), 0.7, dtype=torch.float64)
    assert torch.equal(jansen_total_indices(scores, 4), torch.zeros(2, 3, dtype=torch.float64))
