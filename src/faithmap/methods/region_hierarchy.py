"""Hierarchies of regions: nested groups of features, the coalition structure of Owen values.

A hierarchy is a rooted tree whose leaves are the regions of one image (or the columns of a
row) and whose inner nodes are groups of them: :func:`quadtree` splits the image in four
around the middle of its regions' centroids, again and again; :func:`merge_tree` merges
adjacent regions of similar colour pairwise, round by round, into a binary tree; and
:func:`nested` takes a tree given as nested lists of region indices. Every inner node has at
least two children.

References
----------
Owen, "Values of games with a priori unions", 1977; Winter, "A value for cooperative games
with levels structure of cooperation", IJGT 18, 1989.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.regions import Regions
from faithmap.errors import InvalidParameterError


@dataclass(frozen=True)
class Node:
    """A group of regions: a leaf holds one region, an inner node two or more children."""

    members: tuple[int, ...]
    children: tuple[Node, ...] = ()

    @property
    def mask(self) -> int:
        """The group as a bit mask over region labels (bit ``r``: region ``r``)."""
        return sum(1 << member for member in self.members)

    def depth(self) -> int:
        """Edges on the longest path from this node down to a leaf."""
        return 1 + max(child.depth() for child in self.children) if self.children else 0


def group(children: Sequence[Node]) -> Node:
    """An inner node over ``children`` (a single child is returned as it is)."""
    if len(children) == 1:
        return children[0]
    members = tuple(sorted(member for child in children for member in child.members))
    return Node(members, tuple(children))


def quadtree(labels: Sequence[int], centroids: Tensor) -> Node:
    """Regions split in four around the middle of their centroids' bounding box, recursively.

    ``centroids`` ``(R, 2)`` holds each label's (row, column) centroid. A node's regions go to
    the quadrant that holds their centroid (an axis along which every centroid is the same is
    not split, so a strip splits in two); regions whose centroids all coincide become leaves
    of one node. On a patch grid this is the patch quadtree.
    """
    if len(labels) == 1:
        return Node((labels[0],))
    points = centroids[list(labels)]
    low, high = points.amin(0), points.amax(0)
    spread = high > low
    if not bool(spread.any()):
        return group([Node((label,)) for label in labels])
    middle = (low + high) / 2
    keys = ((points >= middle) & spread).long() @ torch.tensor([2, 1])
    parts = [
        [lab for lab, k in zip(labels, keys.tolist(), strict=True) if k == q] for q in range(4)
    ]
    return group([quadtree(part, centroids) for part in parts if part])


def merge_tree(labels: Sequence[int], colours: Tensor, edges: set[tuple[int, int]]) -> Node:
    """A binary tree of regions merged pairwise by adjacency and colour, round by round.

    Each round pairs the groups greedily, the adjacent pair of closest colour first (a group's
    colour: the mean of its regions' mean colours ``colours`` ``(R, C)``); a group left without
    an adjacent free partner waits for the next round, so the tree stays close to balanced
    (about ``log2 R`` levels). When no two groups touch (separate components), the closest in
    colour are paired regardless of adjacency. Ties go to the lower labels.
    """
    nodes = {label: Node((label,)) for label in labels}
    colour = {label: colours[label] for label in labels}
    weight = {label: 1 for label in labels}
    owner = {label: label for label in labels}
    while len(nodes) > 1:
        touching = {(min(owner[a], owner[b]), max(owner[a], owner[b])) for a, b in edges}
        pairs = [(a, b) for a, b in touching if a != b] or [
            (a, b) for a in nodes for b in nodes if a < b
        ]
        ranked = sorted(
            pairs,
            key=lambda p: (
                (weight[p[0]] + weight[p[1]] - 1).bit_length(),
                float((colour[p[0]] - colour[p[1]]).norm()),
                p,
            ),
        )
        merged: dict[int, int] = {}
        taken: set[int] = set()
        for a, b in ranked:
            if a in taken or b in taken:
                continue
            taken.update((a, b))
            merged[b] = a
            nodes[a] = group([nodes[a], nodes.pop(b)])
            total = weight[a] + weight[b]
            colour[a] = (colour[a] * weight[a] + colour.pop(b) * weight.pop(b)) / total
            weight[a] = total
        owner = {label: merged.get(group_id, group_id) for label, group_id in owner.items()}
    return next(iter(nodes.values()))


def nested(spec: Any, count: int) -> Node:
    """A tree from nested lists of region indices, e.g. ``[[0, 1], [2, [3, 4]]]``.

    Every index in ``[0, count)`` must appear exactly once; a list of one item is that item.
    """
    seen: list[int] = []

    def build(item: Any) -> Node:
        if isinstance(item, int) and not isinstance(item, bool):
            seen.append(item)
            return Node((item,))
        if isinstance(item, list | tuple) and item:
            return group([build(child) for child in item])
        raise InvalidParameterError(
            "A hierarchy must be nested lists of region indices, e.g. [[0, 1], [2, [3, 4]]]. "
            f"Got the item {item!r} instead."
        )

    root = build(spec)
    if sorted(seen) != list(range(count)):
        missing = sorted(set(range(count)) - set(seen))
        extra = sorted({i for i in seen if not 0 <= i < count or seen.count(i) > 1})
        raise InvalidParameterError(
            f"A hierarchy over {count} regions must name each of 0..{count - 1} exactly once. "
            f"Missing {missing}, out of range or repeated {extra}; list every region once."
        )
    return root


def is_nested_spec(value: Any) -> bool:
    """Whether ``value`` is nested non-empty lists (or tuples) with int leaves."""
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and bool(value) and all(map(is_nested_spec, value))


def region_statistics(regions: Regions, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per image and label: centroids ``(N, R, 2)``, mean colours ``(N, R, C)`` and sizes
    ``(N, R)``, on the CPU."""
    labels = regions.labels.cpu()
    n, height, width = labels.shape
    flat = labels.flatten(1)
    sizes = regions.sizes().cpu()
    rows = torch.arange(height).repeat_interleave(width).expand(n, -1).double()
    cols = torch.arange(width).repeat(height).expand(n, -1).double()
    centroids = (
        torch.stack(
            [
                torch.zeros(n, regions.count, dtype=torch.float64).scatter_add_(1, flat, c)
                for c in (rows, cols)
            ],
            2,
        )
        / sizes.clamp_min(1)[..., None]
    )
    pixels = inputs.detach().cpu().double().flatten(2)
    index = flat[:, None].expand(-1, pixels.shape[1], -1)
    totals = torch.zeros(n, pixels.shape[1], regions.count, dtype=torch.float64)
    colours = totals.scatter_add_(2, index, pixels).transpose(1, 2)
    return centroids, colours / sizes.clamp_min(1)[..., None], sizes


def adjacent_pairs(labels: Tensor) -> set[tuple[int, int]]:
    """Pairs of labels ``(a, b)``, ``a < b``, that touch horizontally or vertically in one
    ``(H, W)`` label map."""
    right = torch.stack([labels[:, :-1].flatten(), labels[:, 1:].flatten()], 1)
    down = torch.stack([labels[:-1].flatten(), labels[1:].flatten()], 1)
    pairs = torch.cat([right, down]).sort(1).values
    pairs = torch.unique(pairs[pairs[:, 0] != pairs[:, 1]], dim=0)
    return {(int(a), int(b)) for a, b in pairs.tolist()}


def image_hierarchies(kind: str, regions: Regions, inputs: Tensor, present: Tensor) -> list[Node]:
    """One hierarchy per image over its present regions: ``"quadtree"`` or ``"merge"``."""
    centroids, colours, _ = region_statistics(regions, inputs)
    trees = []
    for image, labels in enumerate(regions.labels.cpu()):
        members = present[image].nonzero().squeeze(1).tolist()
        if kind == "quadtree":
            trees.append(quadtree(members, centroids[image]))
        else:
            trees.append(merge_tree(members, colours[image], adjacent_pairs(labels)))
    return trees
