"""LiMA: subset-selection attribution with the bidirectional greedy search."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.core.validation import check_int
from faithmap.methods.subset.method import SubsetSelection
from faithmap.methods.subset.objectives import Objective
from faithmap.methods.subset.search import bidirectional_greedy


@register_method("lima")
@dataclass(frozen=True, kw_only=True)
class Lima(SubsetSelection):
    """LiMA attribution: regions ranked by LiMA's bidirectional greedy search.

    Each step adds the best region to the front set and, while more than ``pending`` regions
    remain, the worst of ``pending`` pre-selected candidates to a back set, so a ranking of
    ``R`` regions costs about ``(R^2 - P^2) / 2 + P R`` passes instead of greedy's ``R (R + 1)``
    (1.5x fewer at ``R = 49, P = 8``). The objective is that of :class:`~faithmap.methods.
    subset.smdl.Smdl`. Outputs: see :class:`~faithmap.methods.subset.method.SubsetSelection`.

    Parameters
    ----------
    regions : str or Regions, default="slic:49"
        The partition (the paper: 49 SLICO superpixels at 224 px).
    pending : int, default=8
        ``P``, the back-side candidates per step (the paper's main setting).
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What removed regions become (the paper: black pixels).
    complement_fill : {"constant", "mean", "blur", "noise"}, float or None, default=None
        What the subset's regions become when the complement ``V \\ S`` is scored (the
        collaboration term and the recorded deletion curve); ``None``: ``fill``. Setting
        ``fill="blur", complement_fill=0.0`` makes the search remove regions the way faithmap's
        default insertion and deletion metrics do.
    consistency, collaboration, confidence, effectiveness : float, default=20, 5, 0.01, 0
        Term weights of the paper's single-model setting (its scripts for single-modal
        classifiers use no effectiveness term; with an embedding model they use 0.05).
    confidence_form : {"entropy", "evidential"}, default="entropy"
    embedding : str or None, default=None
        Layer for the effectiveness term (``None``: the input of the last ``nn.Linear``).

    References
    ----------
    Chen, Liang, Li, Huang, Lin et al., "Less is More: Efficient Black-box Attribution via
    Minimal Interpretable Subset Selection", 2025 (arXiv:2504.00470).
    """

    consistency: float = 20.0
    collaboration: float = 5.0
    confidence: float = 0.01
    effectiveness: float = 0.0
    pending: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.pending, "pending", "Lima", low=1)

    def rank(self, objective: Objective, n: int, count: int, device: torch.device) -> Tensor:
        return bidirectional_greedy(objective, n, count, device, pending=self.pending)
