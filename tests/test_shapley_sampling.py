"""Shapley value sampling: exact with every order, efficient, antithetic helps, Captum agrees."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from captum.attr import ShapleyValues, ShapleyValueSampling
from torch import nn

from faithmap import Model
from faithmap.core.regions import Regions
from faithmap.errors import InvalidParameterError
from faithmap.methods.shapley_sampling import ShapleySampling

SIDE = 8
PATCH = 4  # 2 x 2 patches; PATCH = 2 gives 16


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * SIDE * SIDE, 3),
    ).eval()


def patch_labels(patch: int) -> torch.Tensor:
    per_row = SIDE // patch
    rows = torch.arange(SIDE) // patch
    return rows[:, None] * per_row + rows[None, :]


def eight_regions() -> torch.Tensor:
    """Two rows of four column bands of two pixels: labels 0..7, ``(H, W)``."""
    return (torch.arange(SIDE) >= 4).long()[:, None] * 4 + (torch.arange(SIDE) // 2)[None, :]


def brute_force_shapley(net: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Shapley values of every region, ``(N, R)``, from all ``2**R`` coalitions and the
    Shapley formula (target 0, removed pixels set to 0)."""
    count = int(labels.max()) + 1
    keeps = list(itertools.product((0, 1), repeat=count))
    masks = torch.tensor(keeps, dtype=x.dtype)[:, labels]  # (2**R, H, W)
    with torch.no_grad():
        rows = (x[:, None] * masks[None, :, None]).flatten(0, 1)
        table = net(rows)[:, 0].double().view(x.shape[0], len(keeps))
    scores = {keep: table[:, i] for i, keep in enumerate(keeps)}
    values = torch.zeros(x.shape[0], count, dtype=torch.float64)
    for keep, score in scores.items():
        size = sum(keep)
        for region in range(count):
            if keep[region]:
                continue
            weight = math.factorial(size) * math.factorial(count - size - 1)
            added = (*keep[:region], 1, *keep[region + 1 :])
            values[:, region] += weight / math.factorial(count) * (scores[added] - score)
    return values


def painted(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-region values ``(N, R)`` painted as a map ``(N, 1, H, W)``."""
    return values[:, labels][:, None]


def region_values(attributions: torch.Tensor, patch: int) -> torch.Tensor:
    """One value per patch from a painted map ``(N, 1, H, W)``."""
    return attributions[:, 0, ::patch, ::patch].flatten(1).double()


def test_all_orders_give_the_exact_shapley_values() -> None:
    net, x = small_cnn(), torch.rand(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    method = ShapleySampling(regions="patches:2", n_permutations="all")
    with pytest.raises(InvalidParameterError, match="R! orders"):
        method.explain(Model(net), x, 0)  # 16 regions: 16! orders
    exact = ShapleySampling(regions="patches:4", n_permutations="all")
    result = exact.explain(Model(net, batch_size=16), x, 0)
    expected = brute_force_shapley(net, x, patch_labels(4))
    torch.testing.assert_close(region_values(result.attributions, 4), expected, atol=1e-5, rtol=0)
    assert result.cost.forward == 3 * 2**4  # every coalition scored once


def test_many_orders_converge_to_the_exact_values_and_are_efficient() -> None:
    net, labels = small_cnn(), eight_regions()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    expected = painted(brute_force_shapley(net, x, labels), labels)
    model = Model(net, batch_size=64)
    few = ShapleySampling(regions=labels, n_permutations=4).explain(model, x, 0)
    many = ShapleySampling(regions=labels, n_permutations=1000).explain(model, x, 0)
    few_error = (few.attributions.double() - expected).abs().max()
    many_error = (many.attributions.double() - expected).abs().max()
    assert many_error < few_error / 4
    assert many_error < 0.02 * expected.abs().max()
    with torch.no_grad():
        gap = (net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]).double()
    for result in (few, many):
        totals = per_region_total(result.attributions, labels)
        torch.testing.assert_close(totals, gap, atol=1e-5, rtol=0)
    assert many.cost.forward == 2 * 2**8  # 7000 prefixes per input, each coalition once


def per_region_total(attributions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sum of the region values painted in a map (each region counted once)."""
    first = [int((labels.flatten() == r).nonzero()[0]) for r in range(int(labels.max()) + 1)]
    return attributions[:, 0].flatten(1)[:, first].double().sum(1)


def test_antithetic_orders_have_smaller_error_than_independent_ones() -> None:
    """Mean squared error over 20 seeds with 6 orders each, on a fixed input."""
    net, labels = small_cnn(), eight_regions()
    x = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    expected = painted(brute_force_shapley(net, x, labels), labels)
    model = Model(net, batch_size=64)

    def mean_squared_error(antithetic: bool) -> float:
        errors = []
        for seed in range(20):
            method = ShapleySampling(
                regions=labels, n_permutations=6, antithetic=antithetic, seed=seed
            )
            values = method.explain(model, x, 0).attributions.double()
            errors.append(float(((values - expected) ** 2).mean()))
        return sum(errors) / len(errors)

    assert mean_squared_error(True) < 0.7 * mean_squared_error(False)


def test_agrees_with_captum_shapley_values_on_every_order() -> None:
    """Captum's ShapleyValues enumerates every order over the same feature mask and baseline."""
    net, x = small_cnn(), torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    labels = patch_labels(4)
    ours = ShapleySampling(regions=labels, n_permutations="all", fill=0.25)
    result = ours.explain(Model(net), x, 1)
    captum = ShapleyValues(net).attribute(
        x, baselines=0.25, target=1, feature_mask=labels.expand(2, 1, SIDE, SIDE).contiguous()
    )
    torch.testing.assert_close(result.attributions[:, 0], captum[:, 0], atol=1e-5, rtol=0)


def test_agrees_with_captum_sampling_on_an_additive_model() -> None:
    """On a linear model every order gives every region its own effect: both are exact."""
    torch.manual_seed(5)
    linear = nn.Linear(3 * SIDE * SIDE, 2)
    net = nn.Sequential(nn.Flatten(), linear).eval()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    labels = patch_labels(2)
    ours = ShapleySampling(regions=labels, n_permutations=4, seed=1).explain(Model(net), x, 0)
    captum = ShapleyValueSampling(net).attribute(
        x, target=0, n_samples=4, feature_mask=labels.expand(2, 1, SIDE, SIDE).contiguous()
    )
    torch.testing.assert_close(ours.attributions[:, 0], captum[:, 0], atol=1e-5, rtol=0)
    weights = linear.weight[0].view(3, SIDE, SIDE)
    per_patch = torch.zeros(2, 16).index_add_(1, labels.flatten(), (x * weights).sum(1).flatten(1))
    torch.testing.assert_close(
        region_values(ours.attributions, 2), per_patch.double(), atol=1e-5, rtol=0
    )


def test_more_than_62_regions_score_every_prefix_and_stay_efficient() -> None:
    net, x = small_cnn(), torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(6))
    result = ShapleySampling(regions="pixels", n_permutations=3).explain(Model(net), x, 0)
    assert result.cost.forward == 2 * (2 + 3 * 63)
    with torch.no_grad():
        gap = net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(result.attributions.sum((1, 2, 3)), gap, atol=1e-5, rtol=0)


def test_tabular_rows_and_absent_regions() -> None:
    """Columns of rows are features; a label with no pixels in an image gets exactly 0."""
    torch.manual_seed(7)
    linear = nn.Linear(5, 1)
    rows = torch.rand(3, 5)
    result = ShapleySampling(n_permutations=2).explain(Model(linear), rows, 0)
    torch.testing.assert_close(result.attributions, rows * linear.weight[0], atol=1e-6, rtol=0)
    net, x = small_cnn(), torch.rand(1, 3, SIDE, SIDE)
    labels = torch.where(patch_labels(4) == 3, 4, patch_labels(4))  # label 3 unused
    regions = Regions(labels[None], 5, "labels")
    result = ShapleySampling(regions=regions, n_permutations="all").explain(Model(net), x, 0)
    assert result.cost.forward == 2**4  # the four present regions' coalitions, each once
    expected = brute_force_shapley(net, x, patch_labels(4))
    torch.testing.assert_close(region_values(result.attributions, 4), expected, atol=1e-5, rtol=0)
