"""The spatial search of subset selection: its k-d tree, its cut, and the search down it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import faithmap
from conftest import RegionSum
from faithmap.errors import InvalidParameterError
from faithmap.methods.region_hierarchy import Node
from faithmap.methods.subset.hierarchical import hierarchical_greedy
from faithmap.methods.subset.search import greedy
from faithmap.methods.subset.spatial import cut, kd_tree
from faithmap.testing import method_checks

CPU = torch.device("cpu")


class Pairwise:
    """A non-submodular set function: ``f(S) = sum_i w_i + sum_{i<j in S} c_ij``, with random
    positive and negative interactions ``c``; counts the subsets it scores."""

    def __init__(self, images: int, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.weights = torch.rand(images, count, generator=generator, dtype=torch.float64)
        pairs = torch.randn(images, count, count, generator=generator, dtype=torch.float64)
        self.pairs = (pairs + pairs.transpose(1, 2)).triu(1) / 2
        self.rows = 0

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.rows += samples.shape[0]
        kept = keeps.double()
        quadratic = torch.einsum("mi,mij,mj->m", kept, self.pairs[samples], kept)
        return (self.weights[samples] * kept).sum(1) + quadratic


def grid(side: int) -> Tensor:
    """Centroids ``(side^2, 2)`` of a ``side x side`` patch grid, label ``r`` at row-major ``r``."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], 1).double()


def leaves(node: Node) -> list[int]:
    return (
        [m for child in node.children for m in leaves(child)] if node.children else [*node.members]
    )


def test_kd_tree_halves_a_patch_grid_along_its_longer_side() -> None:
    """A 2 x 4 grid (rows 0-1, columns 0-3) splits first by column, then by row, then by column."""
    centroids = torch.tensor([[r, c] for r in range(2) for c in range(4)], dtype=torch.float64)
    tree = kd_tree(list(range(8)), centroids)
    assert [child.members for child in tree.children] == [(0, 1, 4, 5), (2, 3, 6, 7)]
    assert [grand.members for grand in tree.children[0].children] == [(0, 1), (4, 5)]
    assert sorted(leaves(tree)) == list(range(8))
    assert tree.depth() == 3


def test_kd_tree_groups_regions_whose_centroids_coincide() -> None:
    centroids = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    tree = kd_tree([2, 0, 1], centroids)
    assert tree.members == (0, 1, 2)
    assert [child.members for child in tree.children] == [(0,), (1,), (2,)]


def test_cut_opens_the_largest_subtree_first() -> None:
    """On a 4 x 4 grid, 4 cells are the 4 quadrants; 3 cells open the first half only."""
    tree = kd_tree(list(range(16)), grid(4))
    quadrants = cut(tree, 4)
    assert [child.members for child in quadrants.children] == [
        (0, 1, 4, 5),
        (2, 3, 6, 7),
        (8, 9, 12, 13),
        (10, 11, 14, 15),
    ]
    assert [len(child.members) for child in cut(tree, 3).children] == [4, 4, 8]
    assert cut(tree, 1) == tree
    assert [child.members for child in cut(tree, 99).children] == [(r,) for r in range(16)]


@pytest.mark.parametrize("count", [5, 16, 49])
def test_with_a_cell_per_region_the_search_is_plain_greedy(count: int) -> None:
    """``cells >= R`` makes the root hold every region: plain greedy's order, on a set function
    with interactions (where the tree search otherwise differs)."""
    centroids = torch.rand(count, 2, generator=torch.Generator().manual_seed(count)).double()
    tree = cut(kd_tree(list(range(count)), centroids), count)
    for seed in range(3):
        expected = greedy(Pairwise(2, count, seed), 2, count, CPU)
        found = hierarchical_greedy(Pairwise(2, count, seed), [tree, tree], count, CPU)
        assert torch.equal(found, expected)


@pytest.mark.parametrize("cells", [1, 2, 4, 8])
def test_the_search_orders_every_region_once_within_its_cost(cells: int) -> None:
    """A binary tree scores 2 subsets per inner node; a root of ``k`` cells scores
    ``k (k + 1) / 2 - 1`` instead of the ``2 (k - 1)`` of the binary levels it replaces."""
    count = 49
    function = Pairwise(1, count, 0)
    tree = cut(kd_tree(list(range(count)), torch.rand(count, 2).double()), cells)
    order = hierarchical_greedy(function, [tree], count, CPU)
    assert sorted(order[0].tolist()) == list(range(count))
    k = len(tree.children)
    assert function.rows == 2 * (count - 1) - 2 * (k - 1) + k * (k + 1) // 2 - 1


def test_the_search_gives_an_image_the_same_order_alone_and_in_a_batch() -> None:
    count = 12
    trees = [cut(kd_tree(list(range(count)), grid(4)[:count]), 3) for _ in range(3)]
    both = hierarchical_greedy(Pairwise(3, count, 4), trees, count, CPU)
    for image in range(3):
        alone = Pairwise(3, count, 4)
        alone.weights, alone.pairs = (
            alone.weights[image : image + 1],
            alone.pairs[image : image + 1],
        )
        single = hierarchical_greedy(alone, trees[image : image + 1], count, CPU)
        assert torch.equal(both[image], single[0])


def test_smdl_runs_the_spatial_search_by_name() -> None:
    """16 patches: deterministic, a permutation, plain greedy's order with 16 cells, and 2 (16 - 1)
    subsets of the binary tree with 2 cells, each scored on both sides, plus empty and full."""
    weights = torch.rand(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = faithmap.Model(RegionSum(weights), outputs="probabilities")
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)).double() + 0.5
    params = {"regions": "patches:4", "confidence": 0.0}
    first = faithmap.explain(model, image, method="smdl", target=0, search="spatial", **params)
    again = faithmap.explain(model, image, method="smdl", target=0, search="spatial", **params)
    assert first.ranking is not None and again.ranking is not None
    assert torch.equal(first.ranking, again.ranking)
    assert sorted(first.ranking[0].tolist()) == list(range(16))
    assert first.config["search"] == "spatial"
    binary = faithmap.explain(
        model, image, method="smdl", target=0, search="spatial", cells=2, **params
    )
    assert binary.cost.forward <= 2 * 2 * 15 + 2
    flat = faithmap.explain(
        model, image, method="smdl", target=0, search="spatial", cells=16, **params
    )
    plain = faithmap.explain(model, image, method="smdl", target=0, search="greedy", **params)
    assert flat.ranking is not None and plain.ranking is not None
    assert torch.equal(flat.ranking, plain.ranking)
    with pytest.raises(InvalidParameterError, match="cells"):
        faithmap.get_method("smdl", search="spatial", cells=0)


@pytest.mark.parametrize(
    "check",
    [
        name
        for name, _ in method_checks(
            "smdl", {"regions": "slic:12", "search": "spatial", "effectiveness": 1.0}
        )
    ],
)
def test_the_spatial_search_keeps_the_method_contract(check: str) -> None:
    """Shape, device, batch and sample independence, determinism ... with this search."""
    params = {"regions": "slic:12", "search": "spatial", "effectiveness": 1.0}
    dict(method_checks("smdl", params))[check]()
