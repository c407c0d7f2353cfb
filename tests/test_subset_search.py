"""The greedy searches of subset selection, on set functions whose maximisers are known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import faithmap
from conftest import RegionSum
from faithmap.errors import InvalidParameterError
from faithmap.methods.region_hierarchy import Node, merge_tree, nested
from faithmap.methods.subset.hierarchical import hierarchical_greedy
from faithmap.methods.subset.objectives import effectiveness, incremental_effectiveness
from faithmap.methods.subset.search import (
    bidirectional_greedy,
    greedy,
    lazy_greedy,
    stochastic_greedy,
)
from faithmap.testing import method_checks

CPU = torch.device("cpu")


class Counting:
    """A set function over regions that counts how many subsets it was asked to score."""

    def __init__(self, values: Tensor) -> None:
        self.values, self.calls, self.rows = values, 0, 0

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.calls += 1
        self.rows += samples.shape[0]
        return self.value(samples, keeps)

    def value(self, samples: Tensor, keeps: Tensor) -> Tensor:
        return (self.values[samples] * keeps).sum(1)


class Coverage(Counting):
    """Facility location ``f(S) = sum_u max_{i in S} sim[u, i]``: monotone and submodular."""

    def value(self, samples: Tensor, keeps: Tensor) -> Tensor:
        sims = self.values[samples]  # (M, U, R)
        return sims.masked_fill(~keeps[:, None, :], 0.0).amax(2).sum(1)


def modular() -> tuple[Tensor, Tensor]:
    """Two images, 9 regions each, with distinct weights; the right order sorts them."""
    generator = torch.Generator().manual_seed(3)
    weights = torch.rand(2, 9, generator=generator, dtype=torch.float64)
    return weights, weights.argsort(1, descending=True)


def test_every_search_finds_the_order_of_a_modular_function() -> None:
    weights, expected = modular()
    runs = {
        "greedy": greedy(Counting(weights), 2, 9, CPU),
        "lazy": lazy_greedy(Counting(weights), 2, 9, CPU),
        "bidirectional": bidirectional_greedy(Counting(weights), 2, 9, CPU, pending=3),
        "stochastic, sample = all": stochastic_greedy(
            Counting(weights), 2, 9, CPU, epsilon=1e-9, generator=torch.Generator()
        ),
    }
    for name, order in runs.items():
        assert torch.equal(order, expected), name


def test_bidirectional_places_the_least_valuable_last_from_the_back() -> None:
    """With 9 regions and P = 3, three back steps run: the three lowest go last, in order."""
    weights, expected = modular()
    function = Counting(weights)
    order = bidirectional_greedy(function, 2, 9, CPU, pending=3)
    assert torch.equal(order[:, -3:], expected[:, -3:])
    # T = ceil((9 - 3) / 2) = 3 two-sided steps (9, 7, 5 front + 3 back candidates each),
    # then greedy on the r = 3 left (3 + 2 candidates; the last one is placed unscored).
    assert function.rows == 2 * ((9 + 3) + (7 + 3) + (5 + 3) + 3 + 2)


def test_lazy_greedy_equals_greedy_on_a_submodular_function_with_fewer_evaluations() -> None:
    generator = torch.Generator().manual_seed(0)
    sims = torch.rand(3, 30, 20, generator=generator, dtype=torch.float64) ** 4
    plain, lazy = Coverage(sims), Coverage(sims)
    assert torch.equal(lazy_greedy(lazy, 3, 20, CPU), greedy(plain, 3, 20, CPU))
    assert plain.rows == 3 * 20 * 21 // 2
    assert lazy.rows < plain.rows / 2


def test_greedy_scores_all_candidates_of_a_step_in_one_call() -> None:
    weights, _ = modular()
    function = Counting(weights)
    greedy(function, 2, 9, CPU)
    assert function.calls == 9
    assert function.rows == 2 * 9 * 10 // 2


def test_stochastic_greedy_depends_only_on_its_generator() -> None:
    generator = torch.Generator().manual_seed(0)
    sims = torch.rand(2, 30, 25, generator=generator, dtype=torch.float64) ** 4

    def run(seed: int) -> Tensor:
        return stochastic_greedy(
            Coverage(sims), 2, 25, CPU, epsilon=0.1, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    function = Coverage(sims)
    stochastic_greedy(function, 2, 25, CPU, epsilon=0.1, generator=torch.Generator())
    # ceil(ln 10) = 3 candidates per step until fewer remain: 23 steps of 3, then 2 and 1.
    assert function.rows == 2 * (23 * 3 + 2 + 1)


def _symmetric_distances(images: int, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    raw = torch.rand(images, count, count, generator=generator, dtype=torch.float64)
    distances = (raw + raw.transpose(1, 2)) / 2
    return distances * (1 - torch.eye(count, dtype=torch.float64))


def test_effectiveness_of_a_hand_made_subset() -> None:
    # Regions 0, 1, 2 at distances d01 = 0.2, d02 = 0.5, d12 = 0.4: nearest of 0 is 0.2, of 1 is
    # 0.2, of 2 is 0.4; region 3 is left out.
    distances = torch.tensor(
        [[0.0, 0.2, 0.5, 0.1], [0.2, 0.0, 0.4, 0.1], [0.5, 0.4, 0.0, 0.1], [0.1, 0.1, 0.1, 0.0]],
        dtype=torch.float64,
    )[None]
    keeps = torch.tensor([[True, True, True, False]])
    assert float(effectiveness(distances, keeps)[0]) == pytest.approx(0.8)
    only_one = torch.tensor([[False, False, True, False]])
    assert float(effectiveness(distances, only_one)[0]) == 0.0


@pytest.mark.parametrize("base_size", [0, 1, 5])
def test_incremental_effectiveness_equals_the_full_formula(base_size: int) -> None:
    count, images = 9, 3
    distances = _symmetric_distances(images, count, seed=base_size)
    generator = torch.Generator().manual_seed(10 + base_size)
    base = torch.zeros(images, count, dtype=torch.bool)
    for image in range(images):
        base[image, torch.randperm(count, generator=generator)[:base_size]] = True
    candidates = [(~base[i]).nonzero().squeeze(1) for i in range(images)]
    samples = torch.cat([torch.full((len(c),), i) for i, c in enumerate(candidates)])
    keeps = torch.cat([base[i].expand(len(c), count).clone() for i, c in enumerate(candidates)])
    keeps[torch.arange(keeps.shape[0]), torch.cat(candidates)] = True
    expected = effectiveness(distances[samples], keeps)
    torch.testing.assert_close(incremental_effectiveness(distances, samples, keeps), expected)


def test_incremental_effectiveness_falls_back_on_unrelated_subsets() -> None:
    count = 8
    distances = _symmetric_distances(2, count, seed=3)
    generator = torch.Generator().manual_seed(4)
    keeps = torch.rand(6, count, generator=generator) < 0.5
    samples = torch.tensor([0, 0, 0, 1, 1, 0])
    expected = effectiveness(distances[samples], keeps)
    torch.testing.assert_close(incremental_effectiveness(distances, samples, keeps), expected)


def test_hierarchical_greedy_on_an_additive_function_follows_the_tree() -> None:
    """Weights 5, 0, 3, 4 under [[0, 1], [2, 3]]: {2, 3} (7) beats {0, 1} (5), then 3 before 2
    and 0 before 1. Sorting alone would give 0, 3, 2, 1; the tree keeps its groups together."""
    weights = torch.tensor([[5.0, 0.0, 3.0, 4.0]], dtype=torch.float64)
    function = Counting(weights)
    order = hierarchical_greedy(function, [nested([[0, 1], [2, 3]], 4)], 4, CPU)
    assert order.tolist() == [[3, 2, 0, 1]]
    # Two candidates at each of the three inner nodes, one call per node.
    assert (function.rows, function.calls) == (6, 3)


def test_hierarchical_greedy_sorts_an_additive_function_on_a_compatible_tree() -> None:
    weights, expected = modular()
    function = Counting(weights)
    trees = [
        nested([[[int(a), int(b)], int(c)] for a, b, c in order.view(3, 3)], 9)
        for order in expected
    ]
    assert torch.equal(hierarchical_greedy(function, trees, 9, CPU), expected)


def test_hierarchical_greedy_scores_2_per_inner_node_of_a_binary_tree() -> None:
    """A binary tree over R regions has R - 1 inner nodes, each scoring its 2 children."""
    generator = torch.Generator().manual_seed(1)
    for count in (2, 5, 8, 49):
        weights = torch.rand(1, count, generator=generator, dtype=torch.float64)
        colours = torch.rand(count, 3, generator=generator, dtype=torch.float64)
        edges = {(i, i + 1) for i in range(count - 1)}
        function = Counting(weights)
        hierarchical_greedy(function, [merge_tree(list(range(count)), colours, edges)], count, CPU)
        assert function.rows == 2 * (count - 1)


def test_hierarchical_greedy_batches_images_and_places_unused_regions_last() -> None:
    """Two images with their own trees (the second uses regions 0, 2, 4 only) give in one batch
    what each gives alone, one call per round."""
    generator = torch.Generator().manual_seed(2)
    weights = torch.rand(2, 6, generator=generator, dtype=torch.float64)
    first = nested([[0, [1, 2]], [[3, 4], 5]], 6)
    second = merge_tree([0, 2, 4], torch.rand(6, 3, generator=generator), {(0, 2), (2, 4)})
    both = hierarchical_greedy(Counting(weights), [first, second], 6, CPU)
    alone = [
        hierarchical_greedy(Counting(weights[i : i + 1]), [tree], 6, CPU)
        for i, tree in enumerate((first, second))
    ]
    assert torch.equal(both, torch.cat(alone))
    assert both[1, 3:].tolist() == [1, 3, 5]
    single = hierarchical_greedy(Counting(weights[:1]), [Node((2,))], 3, CPU)
    assert single.tolist() == [[2, 0, 1]]


def test_hierarchical_greedy_breaks_ties_to_the_earlier_child() -> None:
    weights = torch.ones(1, 4, dtype=torch.float64)
    tree = nested([[2, 3], [0, 1]], 4)
    assert hierarchical_greedy(Counting(weights), [tree], 4, CPU).tolist() == [[2, 3, 0, 1]]


def test_smdl_runs_the_hierarchical_search_by_name() -> None:
    """16 patches of 4 x 4 pixels: at most 2 (16 - 1) subsets, each scored on both sides with the
    fill shared, plus the empty and the full image; the same input gives the same order."""
    weights = torch.rand(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = faithmap.Model(RegionSum(weights), outputs="probabilities")
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)).double() + 0.5
    params = {"regions": "patches:4", "search": "hierarchical", "confidence": 0.0}
    first = faithmap.explain(model, image, method="smdl", target=0, **params)
    again = faithmap.explain(model, image, method="smdl", target=0, **params)
    assert first.ranking is not None and again.ranking is not None
    assert torch.equal(first.ranking, again.ranking)
    assert sorted(first.ranking[0].tolist()) == list(range(16))
    assert first.config["search"] == "hierarchical"
    assert first.cost.forward <= 2 * 2 * 15 + 2
    with pytest.raises(InvalidParameterError, match="search"):
        faithmap.get_method("smdl", search="hierarchy")


@pytest.mark.parametrize(
    "check",
    [
        name
        for name, _ in method_checks(
            "smdl", {"regions": "slic:12", "search": "hierarchical", "effectiveness": 1.0}
        )
    ],
)
def test_the_hierarchical_search_keeps_the_method_contract(check: str) -> None:
    """Shape, device, batch and sample independence, determinism ... with this search."""
    params = {"regions": "slic:12", "search": "hierarchical", "effectiveness": 1.0}
    dict(method_checks("smdl", params))[check]()
