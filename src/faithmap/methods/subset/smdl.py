"""SMDL: submodular subset selection of image regions, with a choice of greedy searches.

LiMA is SMDL with its bidirectional search and its weights: the preset ``lima``
(:data:`Lima`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, Interval, options
from faithmap.core.registry import register_method, register_preset
from faithmap.methods.region_hierarchy import image_hierarchies
from faithmap.methods.subset import search as searches
from faithmap.methods.subset.additive import additive_greedy
from faithmap.methods.subset.hierarchical import hierarchical_greedy
from faithmap.methods.subset.method import SubsetSelection
from faithmap.methods.subset.objectives import Objective
from faithmap.methods.subset.spatial import spatial_trees

SEARCH_SETTINGS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "bidirectional": ("pending",),
        "stochastic": ("epsilon", "seed"),
        "gradient": ("pool",),
        "spatial": ("cells",),
        "additive": ("tolerance",),
    }
)
"""The parameters only one search reads, by search (greedy, lazy and hierarchical read none)."""


@register_method("smdl")
@dataclass(frozen=True, kw_only=True)
class Smdl(SubsetSelection):
    """SMDL attribution: regions ranked by greedy maximisation of a submodular-style score.

    ``F(S) = consistency * p_y(S) + collaboration * (1 - p_y(V \\ S)) + confidence * conf(S)
    + effectiveness * eff(S)`` (see :mod:`faithmap.methods.subset.objectives`), maximised by
    the chosen search over all regions. Outputs: see
    :class:`~faithmap.methods.subset.method.SubsetSelection`.

    Parameters
    ----------
    regions : str or Regions, default="slic:49"
        The partition: ``"slic:K"`` (the paper's ~49 SLICO superpixels at 224 px; K is a
        region count, so the same granularity at any resolution), ``"patches:K"``, or a
        :class:`~faithmap.Regions` (e.g. :func:`~faithmap.core.regions.prior_groups`, the ICLR
        paper's prior-saliency grouping).
    search : {"greedy", "lazy", "stochastic", "bidirectional", "hierarchical", "spatial", \
"gradient", "additive"}
        Default ``"greedy"``: plain greedy (the paper, ``R (R + 1)`` passes with collaboration on),
        lazy greedy with stale bounds, stochastic greedy, or LiMA's bidirectional greedy: each step
        adds the best region to a front set and, while more than ``pending`` regions remain, the
        worst of ``pending`` pre-selected candidates to a back set, so a ranking of ``R`` regions
        costs about ``(R^2 - P^2) / 2 + P R`` passes instead of greedy's ``R (R + 1)`` (1.5x fewer
        at ``R = 49, P = 8``). Or ``"hierarchical"``: a depth-first greedy down a binary merge tree
        of adjacent regions, at most ``4 R`` passes (12x fewer than greedy at ``R = 49``), an
        approximation whose insertion areas are measured against greedy's in
        :mod:`~faithmap.methods.subset.hierarchical`. Or ``"spatial"``: greedy over ``cells``
        spatial blocks of regions (a k-d tree over region centroids), then the same depth-first
        greedy inside each block, about ``4 R + cells^2`` passes (12x fewer than greedy at
        ``R = 49``, ``cells = 4``); ``cells >= R`` is plain greedy. Measured against greedy in
        :mod:`~faithmap.methods.subset.spatial`. Or ``"gradient"`` (torch models): each step
        ranks every candidate by a first-order estimate of its gain (the gradient of the
        objective with respect to a soft region mask at the current subset, one forward and one
        backward pass per side) and scores exactly only the best ``pool // (step + 1)``;
        ``R (R + 1)`` passes become about ``4 (R - 1) + 2 * 14`` at ``pool = 6`` (10x fewer at
        ``R = 49``, a backward pass counted as one pass); measured against greedy in
        ``benchmarks/subset_search_eval.py``: at or above greedy's insertion AUCs with subsets
        on a blur, 0.2 below in insertion into black with the black fill. Or ``"additive"``
        (models with ``(B, C)`` class scores): each region's effect on the class scores is
        measured alone and, with one fill, against the full image (``2 R`` passes); every step
        estimates each candidate's objective from the measured scores of the current subset
        plus that effect (extrapolated by how much of the region's surroundings the subset
        holds) and scores candidates exactly, best estimate first, until the best exact value
        is within ``tolerance`` of every remaining estimate, probing the candidates touching
        the last pick at the second and third picks (see
        :mod:`~faithmap.methods.subset.additive`): about ``2 + 4 R`` passes plus the probes and
        checks, 10-11x fewer than greedy at ``R = 49``; measured against greedy in
        ``benchmarks/subset_search_eval.py``: on held-out images, greedy's insertion AUC on
        average (within 0.01, standard errors 0.01-0.02) except the ResNet with the black
        fill, 0.017 below.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What removed regions become (the paper: black pixels).
    complement_fill : {"constant", "mean", "blur", "noise"}, float or None, default=None
        What the subset's regions become when the complement ``V \\ S`` is scored (the
        collaboration term and the recorded deletion curve); ``None``: ``fill``. Setting
        ``fill="blur", complement_fill=0.0`` makes the search remove regions the way faithmap's
        default insertion and deletion metrics do.
    consistency, collaboration, confidence, effectiveness : float, default=1, 1, 1, 0
        Term weights; the paper sets all four to 1 with an evidential network for confidence
        and a face/CUB embedding layer for effectiveness. Here confidence is the normalised
        entropy (``confidence_form="evidential"`` for evidential logits) and effectiveness is
        off unless asked for, since it needs an embedding layer (it then costs no extra pass).
        LiMA's single-model setting is 20, 5, 0.01, 0 (its scripts for single-modal classifiers
        use no effectiveness term; with an embedding model they use 0.05).
    confidence_form : {"entropy", "evidential"}, default="entropy"
    embedding : str or None, default=None
        Layer whose output embeds a region image; ``None``: the input of the last
        ``nn.Linear`` (the penultimate features, as the paper's "dense"/"embedding" layers).
    pending : int, default=8
        ``P``, the back-side candidates per step of the bidirectional search (LiMA's main
        setting).
    epsilon : float, default=0.1
        Stochastic greedy's accuracy: each step scores ``ceil(ln(1 / epsilon))`` candidates.
    cells : int, default=4
        The spatial search's blocks searched greedily at the top (``>= R``: plain greedy).
    pool : int, default=6
        The gradient search's exact checks: ``pool // (step + 1)`` candidates per step
        (``pool >= R^2``: plain greedy).
    tolerance : float, default=0.04
        The additive search checks candidates until the best exact value is within this share
        of the objective's weights (consistency + confidence + collaboration) of every
        remaining estimate, and takes the candidate of highest target probability among those
        within it of the best; smaller: closer to greedy, more passes.
    seed : int, default=0
        Seed of the stochastic search's draws (the other searches are deterministic).

    References
    ----------
    Chen, Zhang, Liang, Li, Huang, Lin, "Less is More: Fewer Interpretable Region via
    Submodular Subset Selection", ICLR 2024.

    Chen, Liang, Li, Huang, Lin et al., "Less is More: Efficient Black-box Attribution via
    Minimal Interpretable Subset Selection", 2025 (arXiv:2504.00470): LiMA, the bidirectional
    search.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "search": [options((*searches.SEARCHES, "hierarchical", "spatial", "additive"))],
        "cells": [Interval(int, 1)],
        "pool": [Interval(int, 1)],
        "tolerance": [Interval(float, 0.0)],
        "pending": [Interval(int, 1)],
        "epsilon": [Interval(float, 0.0, 1.0, closed="right")],
        "seed": [SEED],
    }

    search: searches.Search | Literal["hierarchical", "spatial", "additive"] = "greedy"
    pending: int = 8
    epsilon: float = 0.1
    cells: int = 4
    pool: int = 6
    tolerance: float = 0.04
    seed: int = 0

    @property
    def uses_seed(self) -> bool:
        """Only the stochastic search draws at random; the others ignore ``seed``."""
        return "seed" in SEARCH_SETTINGS.get(str(self.search), ())

    def config(self) -> dict[str, Any]:
        """The parameters, less the search settings the chosen search does not read: a run's
        record (and a benchmark's configuration hash) changes only with what changes its
        result."""
        read = SEARCH_SETTINGS.get(str(self.search), ())
        unread = {name for names in SEARCH_SETTINGS.values() for name in names} - set(read)
        return {name: value for name, value in super().config().items() if name not in unread}

    def rank(self, objective: Objective, n: int, count: int, device: torch.device) -> Tensor:
        if self.search == "hierarchical":
            scores = objective.scores
            trees = image_hierarchies("merge", scores.regions, scores.inputs, scores.nonempty)
            return hierarchical_greedy(objective, trees, count, device)
        if self.search == "additive":
            return additive_greedy(objective, n, count, device, tolerance=self.tolerance)
        if self.search == "spatial":
            scores = objective.scores
            trees = spatial_trees(scores.regions, scores.inputs, scores.nonempty, self.cells)
            return hierarchical_greedy(objective, trees, count, device)
        return searches.run_search(
            self.search,
            objective,
            n,
            count,
            device,
            pending=self.pending,
            epsilon=self.epsilon,
            seed=self.seed,
            pool=self.pool,
            estimate=objective.first_order if self.search == "gradient" else None,
        )


Lima = register_preset(
    "lima",
    Smdl,
    "LiMA attribution: regions ranked by LiMA's bidirectional greedy search.",
    'the single-model setting of LiMA (Chen, Liang, Li, Huang, Lin et al., "Less is More: '
    'Efficient Black-box Attribution via Minimal Interpretable Subset Selection", 2025, '
    "arXiv:2504.00470)",
    search="bidirectional",
    consistency=20.0,
    collaboration=5.0,
    confidence=0.01,
)
"""LiMA: :class:`Smdl` with the bidirectional search and the weights 20, 5, 0.01 (preset)."""
