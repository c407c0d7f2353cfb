"""Owen values: exact against a brute force over hierarchy-consistent orders, Shapley when flat or
additive, efficient under a budget, equal to shap's PartitionExplainer on the same tree."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
import shap
import torch
from torch import nn

from faithmap import Model
from faithmap.errors import InvalidParameterError
from faithmap.methods.owen import OwenValues
from faithmap.methods.region_hierarchy import merge_tree, nested, quadtree
from faithmap.methods.shapley_sampling import ShapleySampling

SIDE = 8


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * SIDE * SIDE, 3)
    ).eval()


def six_regions() -> torch.Tensor:
    """Two rows of three column bands (widths 3, 3, 2): labels 0..5, ``(H, W)``."""
    rows = (torch.arange(SIDE) >= 4).long()
    cols = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    return rows[:, None] * 3 + cols[None, :]


def groups_of(spec: Any) -> list[set[int]]:
    """Every group (inner node) of a nested-list hierarchy as a set of regions."""
    if isinstance(spec, int):
        return []
    found = [set(leaves(spec))]
    for child in spec:
        found.extend(groups_of(child))
    return found


def leaves(spec: Any) -> list[int]:
    """The regions of a nested-list hierarchy."""
    return [spec] if isinstance(spec, int) else [r for child in spec for r in leaves(child)]


def brute_force_owen(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, spec: Any) -> Any:
    """Owen values as the mean marginal contribution over every order of the regions in which
    each group of the hierarchy is contiguous (the orders consistent with the coalition
    structure), target 0, removed pixels 0: ``(N, R)``."""
    count = int(labels.max()) + 1
    groups = groups_of(spec)
    orders = [
        order
        for order in itertools.permutations(range(count))
        if all(
            max(order.index(r) for r in g) - min(order.index(r) for r in g) == len(g) - 1
            for g in groups
        )
    ]
    cache: dict[frozenset[int], torch.Tensor] = {}

    def score(kept: frozenset[int]) -> torch.Tensor:
        if kept not in cache:
            mask = torch.tensor([float(r in kept) for r in range(count)])[labels]
            with torch.no_grad():
                cache[kept] = net(x * mask)[:, 0].double()
        return cache[kept]

    values = torch.zeros(x.shape[0], count, dtype=torch.float64)
    for order in orders:
        for k, region in enumerate(order):
            values[:, region] += score(frozenset(order[: k + 1])) - score(frozenset(order[:k]))
    return values / len(orders)


def per_region(attributions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The value painted on each region, ``(N, R)``."""
    count = int(labels.max()) + 1
    first = [int((labels.flatten() == r).nonzero()[0]) for r in range(count)]
    return attributions[:, 0].flatten(1)[:, first].double()


def test_exact_against_a_brute_force_over_consistent_orders() -> None:
    net, labels = small_cnn(), six_regions()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    spec = [[0, 1], [2, [3, 4]], 5]
    result = OwenValues(regions=labels, hierarchy=spec).explain(Model(net), x, 0)
    expected = brute_force_owen(net, x, labels, spec)
    torch.testing.assert_close(per_region(result.attributions, labels), expected, atol=1e-5, rtol=0)
    shapley = ShapleySampling(regions=labels, n_permutations="all").explain(Model(net), x, 0)
    assert not torch.allclose(result.attributions, shapley.attributions, atol=1e-4)


def test_flat_hierarchy_gives_the_shapley_values() -> None:
    net, labels = small_cnn(), six_regions()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    flat = OwenValues(regions=labels, hierarchy=list(range(6))).explain(Model(net), x, 0)
    exact = ShapleySampling(regions=labels, n_permutations="all").explain(Model(net), x, 0)
    torch.testing.assert_close(flat.attributions, exact.attributions, atol=1e-5, rtol=0)
    assert flat.cost.forward == 2 * 2**6


@pytest.mark.parametrize("hierarchy", ["merge", "quadtree"])
def test_additive_model_gives_each_region_its_own_effect(hierarchy: Any) -> None:
    torch.manual_seed(3)
    linear = nn.Linear(3 * SIDE * SIDE, 2)
    net = nn.Sequential(nn.Flatten(), linear).eval()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(3))
    result = OwenValues(regions="patches:2", hierarchy=hierarchy).explain(Model(net), x, 1)
    assert result.cost.forward <= 2 * 500
    effect = (x * linear.weight[1].view(3, SIDE, SIDE)).sum(1)  # (N, H, W)
    pooled = nn.functional.avg_pool2d(effect[:, None], 2) * 4  # each 2x2 patch's total
    painted = nn.functional.interpolate(pooled, scale_factor=2.0, mode="nearest")
    torch.testing.assert_close(result.attributions, painted, atol=1e-5, rtol=0)


def test_a_budget_cut_stays_efficient_and_within_budget() -> None:
    net = small_cnn()
    x = torch.rand(3, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(4))
    full = OwenValues(regions="patches:2").explain(Model(net), x, 0)
    cut = OwenValues(regions="patches:2", max_passes=30).explain(Model(net), x, 0)
    assert cut.cost.forward <= 3 * 30 < full.cost.forward
    with torch.no_grad():
        gap = (net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]).double()
    for result in (full, cut):
        torch.testing.assert_close(result.attributions.double().sum((1, 2, 3)) / 4, gap)
    assert torch.unique(cut.attributions[0]).numel() < torch.unique(full.attributions[0]).numel()


def test_equals_shap_partition_explainer_on_the_same_binary_tree() -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=6)

    def f(rows: Any) -> Any:
        return (
            np.tanh(rows @ weights) + rows[:, 0] * rows[:, 3] - rows[:, 1] * rows[:, 2] * rows[:, 4]
        )

    # scipy linkage: node 6 = (0, 1), 7 = (3, 4), 8 = (2, 7), 9 = (5, 6), 10 = (8, 9)
    linkage = np.array([[0, 1, 1, 2], [3, 4, 1, 2], [2, 7, 2, 3], [5, 6, 2, 3], [8, 9, 3, 6]])
    rows = rng.uniform(size=(3, 6))
    masker = shap.maskers.Partition(np.zeros((1, 6)), clustering=linkage.astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = shap.PartitionExplainer(f, masker)(rows, max_evals=500, silent=True).values

    class Wrapped(nn.Module):
        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(f(batch.double().numpy()))[:, None]

    spec = [[2, [3, 4]], [5, [0, 1]]]
    ours = OwenValues(regions="columns", hierarchy=spec).explain(Wrapped(), torch.tensor(rows), 0)
    np.testing.assert_allclose(ours.attributions.numpy(), expected, atol=1e-10)


def test_hierarchies_have_the_expected_shape() -> None:
    grid = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1)
    tree = quadtree(list(range(16)), grid.view(16, 2))
    assert [child.members for child in tree.children] == [
        (0, 1, 4, 5),
        (2, 3, 6, 7),
        (8, 9, 12, 13),
        (10, 11, 14, 15),
    ]
    colours = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    edges = {(0, 1), (1, 2), (2, 3)}
    merged = merge_tree([0, 1, 2, 3], colours, edges)
    assert [child.members for child in merged.children] == [(0, 1), (2, 3)]
    assert nested([[0, 1], [2]], 3).children[1].members == (2,)


def test_bad_hierarchies_and_budgets_are_refused() -> None:
    net = small_cnn()
    x = torch.rand(1, 3, SIDE, SIDE)
    with pytest.raises(InvalidParameterError, match="exactly once"):
        OwenValues(regions="patches:4", hierarchy=[[0, 1], [1, 2]]).explain(Model(net), x, 0)
    with pytest.raises(InvalidParameterError, match="max_passes"):
        OwenValues(regions="patches:2", hierarchy=list(range(16))).explain(Model(net), x, 0)
    with pytest.raises(InvalidParameterError, match="nested lists"):
        OwenValues(regions="columns").explain(Model(nn.Linear(4, 1)), torch.rand(2, 4), 0)
    with pytest.raises(InvalidParameterError, match="hierarchy"):
        OwenValues(hierarchy="octree")  # type: ignore[arg-type]
