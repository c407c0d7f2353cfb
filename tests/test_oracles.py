"""Closed-form answers: the methods on models where the right attribution is known."""

from __future__ import annotations

import itertools
from typing import cast

import pytest
import torch
from torch import nn

import faithmap
from faithmap.methods.integrated_gradients import RULES


def linear_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).double()


@pytest.mark.parametrize("rule", RULES)
def test_integrated_gradients_of_a_linear_model_is_difference_times_weight(rule: str) -> None:
    net = linear_model()
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64)
    baseline = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    target = torch.tensor([0, 2, 3])
    result = faithmap.explain(
        net,
        x,
        method="integrated_gradients",
        target=target,
        rule=rule,
        steps=5,
        baseline_tensor=baseline,
        reduce="none",
    )
    weights = cast(nn.Linear, net[1]).weight[target].view(3, 3, 6, 6)
    torch.testing.assert_close(result.attributions, (x - baseline) * weights)


def test_integrated_gradients_completeness_on_a_nonlinear_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(48, 16), nn.Softplus(), nn.Linear(16, 3), nn.Tanh()
    ).double()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    result = faithmap.explain(net, x, method="integrated_gradients", target=1, steps=64)
    gap = net(x)[:, 1] - net(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(result.attributions.sum(dim=(1, 2, 3)), gap, atol=1e-8, rtol=1e-6)


def test_integrated_gradients_single_midpoint_step_is_gradient_at_midpoint() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 2), nn.Sigmoid()).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    result = faithmap.explain(
        net,
        x,
        method="integrated_gradients",
        target=0,
        steps=1,
        rule="riemann_middle",
        reduce="none",
        multiply_by_inputs=False,
    )
    midpoint = (x / 2).requires_grad_(True)
    (grad,) = torch.autograd.grad(net(midpoint)[:, 0].sum(), midpoint)
    torch.testing.assert_close(result.attributions, grad)


def test_saliency_of_a_linear_model_is_the_absolute_weight() -> None:
    net = linear_model()
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    result = faithmap.explain(net, x, method="saliency", target=torch.tensor([1, 3]), reduce="none")
    weights = cast(nn.Linear, net[1]).weight[[1, 3]].view(2, 3, 6, 6).abs()
    torch.testing.assert_close(result.attributions, weights)
    best = faithmap.explain(net, x, method="saliency", target=torch.tensor([1, 3]))
    torch.testing.assert_close(best.attributions, weights.amax(1, keepdim=True))


class SumModel(nn.Module):
    """Output 0 is the sum of all inputs; output 1 its negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1, keepdim=True)
        return torch.cat([total, -total], dim=1)


@pytest.mark.parametrize(("window", "stride"), [(2, 2), (3, 1), (4, 3)])
def test_occlusion_of_a_sum_model_is_the_mean_window_sum(window: int, stride: int) -> None:
    x = torch.rand(2, 3, 7, 7, dtype=torch.float64)
    result = faithmap.explain(
        SumModel(), x, method="occlusion", target=0, window=window, stride=stride
    )
    expected = torch.zeros(2, 7, 7, dtype=torch.float64)
    covered = torch.zeros(7, 7, dtype=torch.float64)
    starts = range(0, 7 - window + stride, stride)
    for top, left in itertools.product(starts, starts):
        rows, cols = slice(top, top + window), slice(left, left + window)
        expected[:, rows, cols] += x[:, :, rows, cols].sum(dim=(1, 2, 3))[:, None, None]
        covered[rows, cols] += 1
    torch.testing.assert_close(result.attributions[:, 0], expected / covered)


def test_rise_finds_the_region_the_model_reads() -> None:
    inside = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    inside[..., 2:8, 9:15] = True

    def reads_one_region(x: torch.Tensor) -> torch.Tensor:
        kept = (x * inside).flatten(1).sum(1) / (3 * inside.sum())
        return torch.stack([40.0 * (kept - 0.5), torch.zeros_like(kept)], dim=1)

    x = torch.ones(2, 3, 16, 16)
    result = faithmap.explain(reads_one_region, x, method="rise", target=0, n_masks=500)
    saliency = result.attributions[:, 0]
    assert bool(
        (saliency[:, inside[0, 0]].mean(1) > saliency[:, ~inside[0, 0]].mean(1) + 0.1).all()
    )
