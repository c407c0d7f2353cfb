"""KernelSHAP: Shapley values of features as the solution of a weighted linear regression."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, SEED, Constraints, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError
from faithmap.methods.coalitions import (
    check_fit_memory,
    make_features,
    score_coalitions,
    solve_normal_equations,
)

MAX_EXACT_FEATURES = 14
"""Exact enumeration scores ``2**R`` coalitions; beyond 14 features that is over 16k passes."""


def fit_bytes(count: int, n_samples: int) -> int:
    """Bytes KernelSHAP allocates at its peak for ``count`` features and ``n_samples``
    coalitions: the float64 normal equations ``(R, R)`` with their eigen-decomposition (about
    four such matrices) and the coalition and design matrices ``(S, R)`` (about four)."""
    if count <= MAX_EXACT_FEATURES:
        n_samples = max(n_samples, 2**count)
    return 8 * (4 * count * count + 4 * n_samples * count)


def all_coalitions(count: int) -> Tensor:
    """Every coalition of ``count`` features but the empty and the full one,
    ``(2**count - 2, count)``."""
    codes = torch.arange(1, 2**count - 1)
    bits = (codes[:, None] >> torch.arange(count)) & 1
    return bits.double()


def shapley_kernel(coalitions: Tensor) -> Tensor:
    """The Shapley kernel weight ``(R - 1) / (C(R, |z|) |z| (R - |z|))`` of each coalition
    ``(S, R)`` (neither empty nor full)."""
    count = coalitions.shape[1]
    sizes = coalitions.sum(1).long()
    binomials = torch.tensor([math.comb(count, int(k)) for k in range(count + 1)]).double()
    return (count - 1) / (binomials[sizes] * sizes * (count - sizes))


def paired_samples(count: int, pairs: int, generator: torch.Generator) -> Tensor:
    """``2 * pairs`` coalitions drawn with probability proportional to the Shapley kernel, each
    followed by its complement (paired sampling, Covert and Lee 2021), ``(2 * pairs, count)``.

    A coalition size ``k`` is drawn with probability proportional to ``1 / (k (R - k))``, then a
    uniform subset of that size; with these draws every coalition has regression weight 1.
    """
    sizes = torch.arange(1, count, dtype=torch.float64)
    size = torch.multinomial(1.0 / (sizes * (count - sizes)), pairs, True, generator=generator) + 1
    ranks = torch.rand(pairs, count, generator=generator).argsort(1).argsort(1)
    drawn = (ranks < size[:, None]).double()
    return torch.stack([drawn, 1.0 - drawn], 1).view(2 * pairs, count)


def constrained_shapley_fit(
    coalitions: Tensor, weights: Tensor, scores: Tensor, full: Tensor, empty: Tensor
) -> Tensor:
    """Weighted least squares for Shapley values whose sum is ``full - empty``, for all inputs.

    ``coalitions`` ``(S, R)`` and ``weights`` ``(S,)`` are shared; ``scores`` ``(N, S)``,
    ``full`` and ``empty`` ``(N,)`` are per input. The efficiency constraint eliminates the last
    feature, so one ``(R - 1) x (R - 1)`` system is solved for every input at once.
    """
    gap = (full - empty).double()
    if coalitions.shape[1] == 1:
        return gap[:, None]
    last = coalitions[:, -1:]
    design = coalitions[:, :-1] - last
    residual = scores.double() - empty.double()[:, None] - last.T * gap[:, None]
    weighted = design * weights[:, None]
    solution = solve_normal_equations(design.T @ weighted, weighted.T @ residual.T).T
    return torch.cat([solution, gap[:, None] - solution.sum(1, keepdim=True)], 1)


@register_method("kernel_shap")
@dataclass(frozen=True, kw_only=True)
class KernelShap(Method):
    """KernelSHAP (Lundberg and Lee 2017): Shapley values of regions by weighted regression.

    With ``R`` features the Shapley values are the coefficients of the linear model fitted to
    the scores of coalitions under the Shapley kernel, constrained to sum to
    ``score(x) - score(x with every feature removed)``. When ``2**R <= n_samples`` (or
    ``exact=True``, up to 14 features) every coalition is scored and the values are exact;
    otherwise ``n_samples - 2`` coalitions are drawn from the kernel in complementary pairs
    (Covert and Lee 2021), and each distinct coalition is scored once, weighted by how often it
    was drawn (with few features the small coalitions repeat: fewer passes, the same fit). The
    same coalitions serve every input and one linear system is solved for the whole batch.

    Parameters
    ----------
    regions : str, Regions, Tensor or list of lists, default="slic:25"
        The features of an image (see :func:`faithmap.core.regions.make_regions`). For a tabular
        batch ``(N, F)``: every column (``"columns"``, or an image spec such as the default),
        windows of ``K`` columns (``"windows:K"``), or feature groups (a list of column-index
        lists, or an ``(F,)`` integer label array), each column getting its group's value.
    n_samples : int, default=1000
        Coalitions per input, including the full and the empty one: the most forward passes
        per input (repeated draws are scored once).
    exact : bool or None, default=None
        ``None``: enumerate when ``2**R <= n_samples``; ``True``: always (at most 14 features);
        ``False``: always sample.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a removed feature becomes (the baseline).
    activation : {"logits", "softmax"}, default="logits"
    seed : int, default=0

    Raises
    ------
    ResourceError
        Before allocating, when the regression over this many features would need more than
        half the available memory (48,000 columns: about 74 GB); group the features.

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017;
    Covert, Lee, "Improving KernelSHAP: Practical Shapley Value Estimation via Linear
    Regression", AISTATS 2021.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="kernel_shap",
    ...                        regions="patches:4", target=0)
    >>> exp.cost.forward  # 2**4 coalitions per image: exact Shapley values
    32
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "n_samples": [Interval(int, 4)],
        "exact": [BOOLEAN, None],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    regions: RegionsLike = "slic:25"
    n_samples: int = 1000
    exact: bool | None = None
    fill: FillSpec = 0.0
    activation: Activation = "logits"
    seed: int = 0

    def coalitions(self, count: int) -> tuple[Tensor, Tensor]:
        """The coalitions scored for ``count`` features (besides full and empty) and their
        regression weights."""
        exact = count == 1 or (2**count <= self.n_samples if self.exact is None else self.exact)
        if exact and count > MAX_EXACT_FEATURES:
            raise InvalidParameterError(
                f"Exact KernelSHAP enumerates 2**R coalitions; with {count} features that is too "
                f"many. Use exact=None or False, or at most {MAX_EXACT_FEATURES} regions."
            )
        if exact:
            coalitions = all_coalitions(count)
            return coalitions, shapley_kernel(coalitions)
        generator = torch.Generator().manual_seed(self.seed)
        drawn = paired_samples(count, (self.n_samples - 2) // 2, generator)
        # A coalition drawn k times is scored once with regression weight k: the same fit,
        # fewer passes (few features repeat their small coalitions often).
        coalitions, repeats = torch.unique(drawn, dim=0, return_counts=True)
        return coalitions, repeats.double()

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = make_features(self.regions, inputs)
        check_fit_memory(
            "KernelSHAP", fit_bytes, features.count, self.n_samples, device=inputs.device
        )
        coalitions, weights = self.coalitions(features.count)
        ends = torch.stack([torch.ones(features.count), torch.zeros(features.count)]).double()
        keep = torch.cat([ends, coalitions]).to(inputs.device)
        scores = score_coalitions(
            model,
            inputs,
            target,
            features,
            self.fill,
            lambda indices: keep[indices],
            keep.shape[0],
            activation=self.activation,
        )
        values = constrained_shapley_fit(
            keep[2:], weights.to(inputs.device), scores[:, 2:], scores[:, 0], scores[:, 1]
        )
        return features.paint(values.to(inputs.dtype))
