"""Hierarchical greedy: a depth-first greedy search down a tree of nested region groups.

Plain greedy scores every remaining region at every step, ``R (R + 1) / 2`` subsets. This
search orders the regions of a tree instead (:func:`faithmap.methods.region_hierarchy.merge_tree`:
adjacent regions of similar colour merged pairwise, about ``log2 R`` levels): at each inner node,
with ``S`` the regions placed so far, it scores ``S`` plus each child group still to place, takes
the best, orders that child's own regions the same way (depth first), and then chooses among the
remaining children again. A node of ``b`` children costs ``b + (b - 1) + ... + 2`` subsets, so the
binary merge tree over ``R`` regions costs ``2 (R - 1)`` subsets, at most ``4 R`` model passes
with the collaboration term on (plain greedy: ``R (R + 1)``, 12x more at ``R = 49``). Every
prefix of the resulting order is one of the subsets scored, so the curves recorded along it cost
nothing more.
A group keeps its regions together in the order: an object's adjacent superpixels come one
after the other.

The objective is not submodular, and the tree constrains the order, so this is an
approximation of plain greedy, and not a uniformly close one: ``benchmarks/subset_selection.py
--compare`` measures its passes and insertion and deletion areas against plain greedy: with
subsets on a blur and complements on black it matches or beats greedy's insertion areas on the
built-in models, with the papers' black fill it loses 0.1-0.16 of the insertion area into black,
and its deletion areas are worse. The search scores groups of regions, and a model can answer a
single superpixel on black (which may look like an object) quite unlike the group around it.

References
----------
Chen et al., "Less is More: Efficient Black-box Attribution via Minimal Interpretable Subset
Selection", 2025 (the objective and plain greedy). Owen, "Values of games with a priori unions",
1977, and Lundberg et al.'s partition explainer (a search down a merge tree of features).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence

import torch
from torch import Tensor

from faithmap.methods.region_hierarchy import Node

SetScore = Callable[[Tensor, Tensor], Tensor]
"""``score(samples (M,), keeps (M, R) bool) -> (M,)`` values of the objective."""

Walk = Generator[list[frozenset[int]], list[float], list[int]]
"""One image's search: yields subsets to score, receives their values, returns its order."""


def _walk(root: Node) -> Walk:
    """Depth-first greedy down ``root``: at each node, the best child (with what came before)
    first; ties go to the earlier child."""
    placed: list[int] = []

    def visit(node: Node) -> Generator[list[frozenset[int]], list[float], None]:
        if not node.children:
            placed.append(node.members[0])
            return
        left = list(node.children)
        while left:
            best = 0
            if len(left) > 1:
                before = frozenset(placed)
                values = yield [before.union(child.members) for child in left]
                best = max(range(len(left)), key=values.__getitem__)
            yield from visit(left.pop(best))

    yield from visit(root)
    return placed


def hierarchical_greedy(
    score: SetScore, trees: Sequence[Node], count: int, device: torch.device
) -> Tensor:
    """The order ``(N, R)`` of a depth-first greedy search down each image's tree.

    ``trees[i]`` holds the regions image ``i`` uses; the regions it does not use follow, in
    index order. Each round scores the subsets every image still searching asks for, in one call.
    """
    walks = [_walk(tree) for tree in trees]
    orders: list[list[int]] = [[] for _ in trees]
    asked: list[list[frozenset[int]] | None] = [None] * len(walks)
    for i, walk in enumerate(walks):
        try:
            asked[i] = next(walk)
        except StopIteration as done:  # a tree of one region asks nothing
            orders[i] = done.value
    while any(request is not None for request in asked):
        owners = [i for i, request in enumerate(asked) for _ in request or ()]
        keeps = torch.zeros(len(owners), count, dtype=torch.bool)
        rows = [(row, member) for row, subset in enumerate(_flat(asked)) for member in subset]
        if rows:
            keeps[torch.tensor(rows).T.unbind()] = True
        values = score(torch.tensor(owners, device=device), keeps.to(device)).tolist()
        start = 0
        for i, request in enumerate(asked):
            if request is None:
                continue
            answer, start = values[start : start + len(request)], start + len(request)
            try:
                asked[i] = walks[i].send(answer)
            except StopIteration as done:
                orders[i], asked[i] = done.value, None
    for order in orders:
        order.extend(sorted(set(range(count)) - set(order)))
    return torch.tensor(orders, dtype=torch.long, device=device).view(len(trees), count)


def _flat(asked: list[list[frozenset[int]] | None]) -> list[frozenset[int]]:
    return [subset for request in asked for subset in request or ()]
