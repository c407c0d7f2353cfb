"""Spatial greedy: greedy over a few spatial cells, then a depth-first greedy inside each.

The regions of an image are split into a binary k-d tree over their centroids (each node cut at
the middle of its centroids' longer extent, :func:`kd_tree`). The tree's top is then cut into
``cells`` groups (:func:`cut`: the group with the most regions is split first): at the root, with
``S`` the regions placed so far, the search scores ``S`` plus each cell still to place, takes the
best, orders that cell's own regions by the same greedy down its k-d subtree
(:func:`~faithmap.methods.subset.hierarchical.hierarchical_greedy`), and chooses among the
remaining cells again. The root costs ``cells (cells + 1) / 2 - 1`` subsets and each inner node
of the binary subtrees 2, so ``R`` regions cost about ``2 R + cells^2 / 2`` subsets (twice as
many model passes with the collaboration term on). Every prefix of the order is one of the
subsets scored, so the curves recorded along it cost nothing more. With ``cells >= R`` every
region is a cell of its own and the search is plain greedy (ties to the lowest index).

This is an approximation of plain greedy on a non-submodular objective, measured by
``benchmarks/subset_selection.py --compare`` (passes, insertion and deletion areas against
plain greedy, per protocol). Spatial cells differ from the colour merge tree of the
``"hierarchical"`` search in keeping compact blocks of the image together, which is what an
insertion onto black needs: a model can answer a lone superpixel on black unlike the block
around it.

References
----------
Bentley, "Multidimensional binary search trees used for associative searching", CACM 18, 1975
(the k-d tree). Chen et al., "Less is More: Efficient Black-box Attribution via Minimal
Interpretable Subset Selection", 2025 (the objective and plain greedy).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from faithmap.core.regions import Regions
from faithmap.methods.region_hierarchy import Node, group, region_statistics


def kd_tree(labels: Sequence[int], centroids: Tensor) -> Node:
    """A binary tree over ``labels``: each node split at the middle of its centroids' longer
    extent (``centroids`` ``(R, 2)`` per label); labels whose centroids coincide are leaves of
    one node. Children are in label order of their first member."""
    if len(labels) == 1:
        return Node((labels[0],))
    points = centroids[list(labels)]
    extent = points.amax(0) - points.amin(0)
    axis = int(extent.argmax())
    if float(extent[axis]) == 0.0:
        return group([Node((label,)) for label in sorted(labels)])
    middle = float(points[:, axis].amin() + extent[axis] / 2)
    below = (points[:, axis] < middle).tolist()
    low = [label for label, under in zip(labels, below, strict=True) if under]
    high = [label for label, under in zip(labels, below, strict=True) if not under]
    return group(sorted((kd_tree(low, centroids), kd_tree(high, centroids)), key=_first))


def cut(tree: Node, cells: int) -> Node:
    """The tree with its top replaced by one node over ``cells`` subtrees (or all its leaves
    when it has fewer): the subtree with the most regions is opened first, ties to the earlier;
    the cells are in label order of their first member."""
    frontier = [tree]
    while len(frontier) < cells:
        opened = max(
            (node for node in frontier if node.children),
            key=lambda node: len(node.members),
            default=None,
        )
        if opened is None:
            break
        at = frontier.index(opened)
        frontier[at : at + 1] = list(opened.children)
    return group(sorted(frontier, key=_first))


def _first(node: Node) -> int:
    return min(node.members)


def spatial_trees(regions: Regions, inputs: Tensor, present: Tensor, cells: int) -> list[Node]:
    """Each image's k-d tree over the regions it uses (``present`` ``(N, R)``), its top cut into
    ``cells`` cells; the trees :func:`~faithmap.methods.subset.hierarchical.hierarchical_greedy`
    searches."""
    centroids, _, _ = region_statistics(regions, inputs)
    return [
        cut(kd_tree(used.nonzero().squeeze(1).tolist(), centroids[image]), cells)
        for image, used in enumerate(present.cpu())
    ]
