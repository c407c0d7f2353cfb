"""Sobol attribution: total-order Sobol indices of regions under random soft masks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Self

import torch
from torch import Tensor

from faithmap.core.constraints import SEED, Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec
from faithmap.core.targets import Target
from faithmap.methods.coalitions import score_coalitions
from faithmap.methods.scaling import resolve_regions, scaled_features


def replicated_design(count: int, n_design: int, seed: int) -> tuple[Tensor, Tensor]:
    """The two quasi-Monte-Carlo matrices ``A`` and ``B`` ``(n_design, count)`` of the
    replicated design: the halves of a scrambled Sobol sequence of dimension ``2 * count``."""
    engine = torch.quasirandom.SobolEngine(2 * count, scramble=True, seed=seed)  # type: ignore[no-untyped-call]
    points = engine.draw(n_design, dtype=torch.float64)
    return points[:, :count], points[:, count:]


def jansen_total_indices(scores: Tensor, n_design: int) -> Tensor:
    """Jansen's estimator of the total Sobol index of every feature, ``(N, R)``.

    ``scores`` ``(N, n (R + 2))`` holds ``f(A)``, ``f(B)``, then ``f(C_i)`` for each feature
    ``i``: ``ST_i = sum_j (f(A)_j - f(C_i)_j)^2 / (2 n Var[f])``.

    ``Var[f]`` is estimated over all ``n (R + 2)`` scores, not over ``A`` and ``B`` alone: every
    row of every matrix is a draw of the same uniform levels, and with the few rows the
    benchmark uses (``n = 4``) a model that saturates (a softmax near 1) can score ``A`` and
    ``B`` identically while a ``C_i`` differs, which divided a positive sum by zero. Over all
    scores, a zero variance means every score is equal, and every index is 0.
    """
    n, count = n_design, scores.shape[1] // n_design - 2
    scores = scores.double()
    f_a = scores[:, :n]
    f_c = scores[:, 2 * n :].view(-1, count, n)
    variance = scores.var(1, correction=0)
    squares = (f_a[:, None, :] - f_c).pow(2).sum(2)
    return squares / (2 * n * variance.clamp_min(torch.finfo(torch.float64).tiny))[:, None]


@register_method("sobol")
@dataclass(frozen=True, kw_only=True)
class Sobol(Method):
    """Sobol attribution (Fel et al. 2021): total-order indices of regions.

    Each region is kept at a random level in ``[0, 1]`` (the input blended with the fill); the
    levels come from a scrambled Sobol sequence in the replicated design ``A``, ``B``,
    ``C_i = A`` with column ``i`` from ``B`` (Saltelli), costing ``n_design (R + 2)`` passes per
        input; a region's attribution is its total Sobol index by Jansen's estimator. The default
    regions are the paper's 8x8 grid of nearest-upsampled cells at any image size.

    Parameters
    ----------
    regions : str, Regions, Tensor or None, default=None
        The features of an image (see :func:`faithmap.core.regions.make_regions`); the columns of a
        tabular batch ``(N, F)``. ``None``: square patches of
        :func:`~faithmap.methods.scaling.grid_side` pixels, about 8x8 of them on any image
        (``"patches:8"`` on 64x64, ``"patches:28"`` on 224x224, ``"patches:12"`` on 48x192,
        ``"patches:1"`` on 8x8); the explanation records the patches used.
    n_design : int, default=32
        Rows of each design matrix (xplique's default; the paper used 32 to 64).
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a fully removed region becomes (0: the paper's inpainting ``x * M``).
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0
        Seed of the Sobol sequence's scrambling.

    References
    ----------
    Fel, Cadène, Chalvidal, Cord, Vigouroux, Serre, "Look at the Variance! Efficient Black-box
    Explanations with Sobol-based Sensitivity Analysis", NeurIPS 2021.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="sobol", regions="patches:4",
    ...                        n_design=8)
    >>> exp.cost.forward  # 2 targets + 2 images x 8 x (4 + 2)
    98
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": [None, *REGIONS],
        "n_design": [Interval(int, 2)],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    regions: RegionsLike | None = None
    n_design: int = 32
    fill: FillSpec = 0.0
    activation: Activation = "softmax"
    seed: int = 0

    def resolve(self, inputs: Tensor) -> Self:
        """The regions for these inputs: ``None`` becomes square patches scaled to them."""
        return replace(self, regions=resolve_regions(self.regions, inputs))

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = scaled_features(self.regions, inputs)
        count, n = features.count, self.n_design
        design_a, design_b = (d.to(inputs.device) for d in replicated_design(count, n, self.seed))
        columns = torch.arange(count, device=inputs.device)

        def coalitions(indices: Tensor) -> Tensor:
            row = indices % n
            block = indices // n  # 0: A, 1: B, 2 + i: C_i
            swapped = columns[None, :] == (block - 2)[:, None]
            return torch.where(swapped | (block == 1)[:, None], design_b[row], design_a[row])

        scores = score_coalitions(
            model,
            inputs,
            target,
            features,
            self.fill,
            coalitions,
            n * (count + 2),
            activation=self.activation,
        )
        return features.paint(jansen_total_indices(scores, n).to(inputs.dtype))
