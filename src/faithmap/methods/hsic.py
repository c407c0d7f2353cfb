"""HSIC attribution: the dependence between each region's presence and the model's output."""

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

CHUNK = 16
"""Inputs whose ``n x n`` output kernels are held at once."""


def binary_design(count: int, n_design: int, seed: int) -> Tensor:
    """``(n_design, count)`` binary masks: a scrambled Sobol sequence rounded to {0, 1}."""
    engine = torch.quasirandom.SobolEngine(count, scramble=True, seed=seed)  # type: ignore[no-untyped-call]
    return engine.draw(n_design, dtype=torch.float64).round()


def hsic_scores(design: Tensor, scores: Tensor) -> Tensor:
    """HSIC between each feature of the binary ``design`` ``(n, R)`` and each row of
    ``scores`` ``(N, n)``, ``(N, R)``.

    Output kernel: Gaussian, ``L_ab = exp(-(y_a - y_b)^2 / (2 w^2))`` with ``w`` the median
    pairwise distance; input kernel per feature ``K_ab = 1.5 - (m_a - m_b)^2`` (1.5 when two
    masks agree on the feature, 0.5 otherwise). ``HSIC = tr(K H L H) / (n - 1)^2`` (Gretton et
    al. 2005) with the centring ``H = I - 11^T / n``; as ``HLH`` has zero row sums this is
    ``2 m^T (HLH) m / (n - 1)^2``.
    """
    n = design.shape[0]
    results = []
    for chunk in torch.split(scores.double(), CHUNK):
        distance = (chunk[:, :, None] - chunk[:, None, :]).abs()
        upper = distance[:, *torch.triu_indices(n, n, 1, device=chunk.device)]
        width = upper.median(1).values.clamp_min(torch.finfo(torch.float64).eps)
        kernel = torch.exp(-(distance**2) / (2 * width[:, None, None] ** 2))
        centred = kernel - kernel.mean(1, keepdim=True) - kernel.mean(2, keepdim=True)
        centred = centred + kernel.mean((1, 2), keepdim=True)
        results.append(2 * torch.einsum("ar,kab,br->kr", design, centred, design) / (n - 1) ** 2)
    return torch.cat(results)


@register_method("hsic")
@dataclass(frozen=True, kw_only=True)
class Hsic(Method):
    """HSIC attribution (Novello et al. 2022): how much the output depends on each region.

    ``n_design`` binary masks over the regions (a Sobol sequence rounded to {0, 1}, as xplique)
    are scored, and a region's attribution is the Hilbert-Schmidt independence criterion
    between its presence and the target score (see :func:`hsic_scores`).

    Parameters
    ----------
    regions : str, Regions, Tensor or None, default=None
        The features of an image; the columns of a tabular batch ``(N, F)``. ``None``: the
        paper's 8x8 grid at any size, square patches of
        :func:`~faithmap.methods.scaling.grid_side` pixels (``"patches:8"`` on 64x64,
        ``"patches:28"`` on 224x224, ``"patches:12"`` on 48x192, ``"patches:1"`` on 8x8); the
        explanation records the patches used.
    n_design : int, default=500
        Forward passes per input (xplique's default).
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a removed region becomes (0: the paper's inpainting ``x * M``).
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0
        Seed of the Sobol sequence's scrambling.

    References
    ----------
    Novello, Fel, Vigouroux, "Making Sense of Dependence: Efficient Black-box Explanations
    Using Dependence Measure", NeurIPS 2022.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="hsic", regions="patches:4",
    ...                        n_design=32)
    >>> exp.attributions.shape
    torch.Size([2, 1, 8, 8])
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": [None, *REGIONS],
        "n_design": [Interval(int, 2)],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    regions: RegionsLike | None = None
    n_design: int = 500
    fill: FillSpec = 0.0
    activation: Activation = "softmax"
    seed: int = 0

    def resolve(self, inputs: Tensor) -> Self:
        """The regions for these inputs: ``None`` becomes square patches scaled to them."""
        return replace(self, regions=resolve_regions(self.regions, inputs))

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = scaled_features(self.regions, inputs)
        design = binary_design(features.count, self.n_design, self.seed).to(inputs.device)
        scores = score_coalitions(
            model,
            inputs,
            target,
            features,
            self.fill,
            lambda indices: design[indices],
            self.n_design,
            activation=self.activation,
        )
        return features.paint(hsic_scores(design, scores).to(inputs.dtype))
