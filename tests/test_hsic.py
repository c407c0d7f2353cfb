"""HSIC attribution: the closed form equals tr(KHLH)/(n-1)^2; the order of an additive model."""

from __future__ import annotations

import torch
from torch import nn

import faithmap
from faithmap.methods.hsic import binary_design, hsic_scores

COEFFICIENTS = torch.tensor([1.0, 3.0, 0.2, 2.0], dtype=torch.float64)
LABELS = torch.arange(16).view(4, 4) // 4


class Additive(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = x[:, 0].mean(2)
        return torch.stack([levels @ COEFFICIENTS, torch.tanh(levels).prod(1)], 1)


def test_the_estimator_is_the_trace_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    design = binary_design(5, 24, seed=1)
    scores = torch.randn(2, 24, generator=generator, dtype=torch.float64)
    n = 24
    centring = torch.eye(n, dtype=torch.float64) - 1.0 / n
    for i in range(2):
        y = scores[i]
        distance = (y[:, None] - y[None, :]).abs()
        width = distance[torch.triu_indices(n, n, 1).unbind()].median()
        output_kernel = torch.exp(-(distance**2) / (2 * width**2))
        for feature in range(5):
            m = design[:, feature]
            input_kernel = 1.5 - (m[:, None] - m[None, :]) ** 2
            trace = torch.trace(input_kernel @ centring @ output_kernel @ centring) / (n - 1) ** 2
            torch.testing.assert_close(hsic_scores(design, scores)[i, feature], trace)


def test_an_additive_model_ranks_regions_by_their_weight() -> None:
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    result = faithmap.explain(
        Additive(), x, method="hsic", regions=LABELS, target=0, n_design=256, activation="logits"
    )
    values = result.attributions[0, 0, :, 0]
    assert torch.equal(values.argsort(descending=True), COEFFICIENTS.argsort(descending=True))
