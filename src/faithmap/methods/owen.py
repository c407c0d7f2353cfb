"""Owen values over a hierarchy of regions: Shapley values among groups, recursively."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from faithmap.core.constraints import Constraints, Interval, Satisfies
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.coalitions import check_memory, make_features
from faithmap.methods.region_hierarchy import (
    Node,
    image_hierarchies,
    is_nested_spec,
    nested,
)
from faithmap.methods.shapley_sampling import present_features


@dataclass(frozen=True)
class OwenPlan:
    """The coalitions one input needs and how their scores combine into its Owen values.

    ``coalitions`` are bit masks (row 0 keeps nothing, row 1 everything present); each term
    ``(region, row with, row without, weight)`` adds ``weight * (score[with] - score[without])``
    to the region; ``unexpanded`` counts the inner nodes the budget left whole (0: exact).
    """

    coalitions: list[int]
    terms: list[tuple[int, int, int, float]]
    unexpanded: int


def shapley_weight(size: int, players: int) -> float:
    """The Shapley weight ``|H|! (m - |H| - 1)! / m!`` of a coalition of ``size`` of the other
    ``players - 1`` players."""
    return math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)


def owen_plan(root: Node, present: int, max_passes: int) -> OwenPlan:
    """Expand ``root``'s nodes breadth first while their coalitions fit ``max_passes``.

    A node reached in context ``T`` (a union of whole sibling groups of its ancestors) with
    weight ``w`` hands each child ``j`` the contexts ``T | union(H)`` for every set ``H`` of
    its other children, with weight ``w * shapley_weight(|H|, m)``; expanding it costs at most
    ``contexts x (2**m - 2)`` new coalitions. A node left whole (a leaf, or an inner node whose
    expansion no longer fits; a later, smaller one still may) gets
    ``sum w * (v(T | node) - v(T))``, shared equally by its present regions. Coalitions are
    masked to the ``present`` regions, so absent ones cost no pass.
    """
    index = {0: 0, root.mask & present: 1}
    queue: deque[tuple[Node, list[tuple[int, float]]]] = deque([(root, [(0, 1.0)])])
    whole: list[tuple[Node, list[tuple[int, float]]]] = []
    unexpanded = 0
    while queue:
        node, contexts = queue.popleft()
        cost = len(contexts) * (2 ** len(node.children) - 2)
        if node.children and len(index) + cost <= max_passes:
            queue.extend(expand(node, contexts, index, present))
            continue
        unexpanded += bool(node.children)
        whole.append((node, contexts))
    terms: list[tuple[int, int, int, float]] = []
    for node, contexts in whole:
        members = [member for member in node.members if present >> member & 1]
        for context, weight in contexts:
            with_row = index[(context | node.mask) & present]
            without_row = index[context & present]
            terms.extend(
                (member, with_row, without_row, weight / len(members)) for member in members
            )
    return OwenPlan(list(index), terms, unexpanded)


def expand(
    node: Node, contexts: list[tuple[int, float]], index: dict[int, int], present: int
) -> list[tuple[Node, list[tuple[int, float]]]]:
    """The children of ``node`` with their contexts; new coalitions are added to ``index``."""
    players = len(node.children)
    unions = [0] * 2**players
    for subset in range(1, 2**players):
        lowest = (subset & -subset).bit_length() - 1
        unions[subset] = unions[subset & (subset - 1)] | node.children[lowest].mask
    for context, _ in contexts:
        for union in unions:
            index.setdefault((context | union) & present, len(index))
    sizes = [bin(subset).count("1") for subset in range(2**players - 1)]
    weights = [shapley_weight(size, players) for size in sizes]  # the full set is nobody's H
    return [
        (
            child,
            [
                (context | unions[subset], weight * weights[subset])
                for context, weight in contexts
                for subset in range(2**players - 1)
                if not subset >> j & 1
            ],
        )
        for j, child in enumerate(node.children)
    ]


def keep_table(plans: list[OwenPlan], count: int) -> Tensor:
    """``(N, S, R)`` bool keep vectors of every input's coalitions, ``S`` the most any input
    needs; an input with fewer repeats its full coalition (row 1)."""
    rows = max(len(plan.coalitions) for plan in plans)
    width = (count + 7) // 8
    table = np.zeros((len(plans), rows, count), dtype=bool)
    for image, plan in enumerate(plans):
        codes = plan.coalitions + [plan.coalitions[1]] * (rows - len(plan.coalitions))
        packed = np.frombuffer(b"".join(c.to_bytes(width, "little") for c in codes), np.uint8)
        bits = np.unpackbits(packed.reshape(rows, width), axis=1, bitorder="little")
        table[image] = bits[:, :count].astype(bool)
    return torch.from_numpy(table)


def is_hierarchy(value: Any) -> bool:
    """``"merge"``, ``"quadtree"`` or nested lists of region indices."""
    return value in ("merge", "quadtree") or (not isinstance(value, str) and is_nested_spec(value))


HIERARCHY = [
    Satisfies(
        is_hierarchy,
        "'merge', 'quadtree' or nested lists of region indices such as [[0, 1], [2, 3]]",
        invalid="octree",
    )
]


@register_method("owen")
@dataclass(frozen=True, kw_only=True)
class OwenValues(Method):
    """Owen values of regions over a hierarchy (Owen 1977; Winter 1989 for several levels).

    The regions are the leaves of a tree of nested groups. At the root the children play a
    game among themselves, each one in or out as a whole, and each gets its Shapley value; a
    group's value is then shared among its own children the same way, with the other groups
    of each level above kept or removed as whole groups. For region ``i`` on the path
    ``root = G_0 > G_1 > ... > G_L = {i}``, with ``m_l`` children at ``G_{l-1}``::

        phi_i = sum over H_1, ..., H_L of prod_l |H_l|! (m_l - |H_l| - 1)! / m_l!
                * (v(T + i) - v(T)),      T = union of the groups in H_1, ..., H_L

    where ``H_l`` ranges over sets of ``G_l``'s siblings. This is the exact Owen (Winter
    levels) value: it is efficient (the values sum to ``v(all) - v(none)``), it equals the
    Shapley value for a flat hierarchy and for additive models, and needs about ``2 R**2 / 3``
    coalitions for a balanced binary tree of ``R`` regions instead of ``2**R``. The tree is
    expanded breadth first, node by node, while the coalitions fit ``max_passes``; a group
    whose children no longer fit shares its Owen value equally among its regions (the map then
    paints that group whole): the exact Owen values of the tree cut there.

    shap's Partition explainer computes the same recursion on binary trees, with these
    differences: its tree is a clustering of pixels (or the features' correlation tree); its
    ``max_evals`` budget (default 500) expands one node-in-context at a time, largest
    ``|f(T + node) - f(T)| x weight`` first with random tie-breaking (faithmap expands
    coarse groups before fine ones, deterministically, every context of a node at once); it
    scores every expansion's two coalitions even when they were scored before (faithmap scores
    each distinct coalition once); and ``fixed_context`` 0 or 1 replaces the two contexts per
    level by one (a linear-cost approximation). With an unlimited budget on the same binary
    tree both give the values above.

    Parameters
    ----------
    regions : str, Regions, Tensor or list of lists, default="slic:25"
        The leaves (see :func:`faithmap.methods.coalitions.make_features`).
    hierarchy : {"merge", "quadtree"} or nested lists, default="merge"
        ``"merge"``: a binary tree of adjacent regions merged pairwise by colour, per image;
        ``"quadtree"``: regions split in four around the middle of their centroids,
        recursively (the patch quadtree on ``"patches:K"``); nested lists of region indices
        (``[[0, 1], [2, [3, 4]]]``): the same tree for every input, also for tabular rows.
    max_passes : int, default=500
        The most coalitions scored per input (including the full and empty one).
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
    activation : {"logits", "softmax"}, default="logits"

    Raises
    ------
    InvalidParameterError
        When even the root's children do not fit ``max_passes``.

    References
    ----------
    Owen, "Values of games with a priori unions", Mathematical Economics and Game Theory, 1977;
    Winter, "A value for cooperative games with levels structure of cooperation", IJGT 18,
    1989; Lopez, Saboya, "On the relationship between Shapley and Owen values", CEJOR 17,
    2009; Lundberg et al., shap's ``PartitionExplainer``.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(1, 3, 8, 8), method="owen", target=0,
    ...                        regions="patches:2", hierarchy="quadtree")
    >>> exp.cost.forward  # 16 patches: 2**4 coalitions at the root, 4 x 8 x 14 below
    464
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "hierarchy": HIERARCHY,
        "max_passes": [Interval(int, 4)],
        "fill": FILL,
        "activation": [ACTIVATION],
    }

    regions: RegionsLike = "slic:25"
    hierarchy: Literal["merge", "quadtree"] | list[Any] = "merge"
    max_passes: int = 500
    fill: FillSpec = 0.0
    activation: Activation = "logits"

    def trees(self, features: Any, inputs: Tensor, present: Tensor) -> list[Node]:
        """The hierarchy of each input."""
        if not isinstance(self.hierarchy, str):
            return [nested(self.hierarchy, features.count)] * inputs.shape[0]
        if features.regions is None or not features.regions.channel_axis:
            raise InvalidParameterError(
                f"hierarchy={self.hierarchy!r} groups image regions by position and colour; "
                "tabular rows (N, F) need the hierarchy as nested lists of feature indices, "
                "e.g. hierarchy=[[0, 1], [2, 3]]."
            )
        return image_hierarchies(self.hierarchy, features.regions, inputs, present)

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = make_features(self.regions, inputs)
        count, batch = features.count, inputs.shape[0]
        present = present_features(features, count, batch)
        plans = []
        for tree, row in zip(self.trees(features, inputs, present), present, strict=True):
            if 2 ** len(tree.children) > self.max_passes:
                raise InvalidParameterError(
                    f"The 'max_passes' parameter of owen ({self.max_passes}) does not cover the "
                    f"{2 ** len(tree.children)} coalitions of the hierarchy's top level "
                    f"({len(tree.children)} groups). Raise max_passes or give a hierarchy with "
                    "fewer groups at its top."
                )
            present_mask = sum(1 << int(region) for region in row.nonzero())
            plans.append(owen_plan(tree, present_mask, self.max_passes))
        rows = max(len(plan.coalitions) for plan in plans)
        check_memory(
            batch * rows * count,
            f"Owen values' keep table ({batch} inputs x {rows} coalitions x {count} regions)",
            "Explain fewer inputs at once, or use fewer regions.",
            device=inputs.device,
        )
        table = keep_table(plans, count).to(inputs.device)
        substrate = make_removal(self.fill).substrate(inputs)

        def masks(samples: Tensor, indices: Tensor) -> Tensor:
            return features.masks(table[samples, indices].to(inputs.dtype), samples)

        scores = score_removals(
            model, inputs, target, substrate, masks, rows, activation=self.activation
        ).double()
        values = torch.zeros(batch, count, dtype=torch.float64, device=scores.device)
        for image, plan in enumerate(plans):
            region, with_row, without_row, weight = (
                torch.tensor(column, device=scores.device)
                for column in zip(*plan.terms, strict=True)
            )
            gains = weight.double() * (scores[image, with_row] - scores[image, without_row])
            values[image].scatter_add_(0, region, gains)
        return features.paint(values.to(inputs.dtype))
