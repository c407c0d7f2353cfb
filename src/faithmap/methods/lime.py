"""LIME: the weights of a local linear surrogate fitted to the model on random coalitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

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
from faithmap.methods.coalitions import (
    check_fit_memory,
    make_features,
    score_coalitions,
    weighted_least_squares,
)


def fit_bytes(count: int, n_samples: int) -> int:
    """Bytes LIME allocates at its peak for ``count`` features and ``n_samples`` coalitions:
    the float64 ridge normal equations ``(R, R)`` with their eigen-decomposition (about five
    such matrices) and the coalition and centred design matrices ``(S, R)`` (about four)."""
    return 8 * (5 * count * count + 4 * n_samples * count)


def lime_coalitions(count: int, n_samples: int, generator: torch.Generator) -> Tensor:
    """The input itself (all features kept), then ``n_samples - 1`` uniform random coalitions,
    each feature kept with probability 1/2 (as ``lime_image``), ``(n_samples, count)``."""
    drawn = torch.rand(n_samples - 1, count, generator=generator) < 0.5
    return torch.cat([torch.ones(1, count), drawn.double()])


def cosine_kernel(coalitions: Tensor, width: float) -> Tensor:
    """``sqrt(exp(-d^2 / width^2))`` of the cosine distance ``d = 1 - sqrt(|z| / R)`` between
    each coalition and the input (all features kept), the empty coalition at distance 1: the
    kernel of the ``lime`` package's ``LimeImageExplainer``, so a width means the same there."""
    distance = 1.0 - (coalitions.sum(1) / coalitions.shape[1]).sqrt()
    return torch.exp(-(distance**2) / (2.0 * width**2))


@register_method("lime")
@dataclass(frozen=True, kw_only=True)
class Lime(Method):
    """LIME (Ribeiro et al. 2016): a weighted ridge surrogate over feature coalitions.

    ``n_samples`` coalitions (the first keeps every feature) are scored; each is weighted by an
    exponential kernel of its cosine distance to the input, and a ridge regression with an
    unpenalised intercept is fitted, as ``lime``'s ``Ridge(alpha=1)``. A feature's attribution
    is its coefficient. The coalitions are shared by every input and the regression is solved
    for the whole batch at once in torch.

    Parameters
    ----------
    regions : str, Regions, Tensor or list of lists, default="slic:25"
        The features of an image (see :func:`faithmap.core.regions.make_regions`). For a tabular
        batch ``(N, F)``: every column (``"columns"``, or an image spec such as the default),
        windows of ``K`` columns (``"windows:K"``), or feature groups (a list of column-index
        lists, or an ``(F,)`` integer label array), each column getting its group's value.
    n_samples : int, default=1000
        Forward passes per input.
    kernel_width : float, default=0.25
        Width of the similarity kernel over cosine distances: ``lime_image``'s default, with
        its kernel (``tests/test_lime.py`` compares the weights with the ``lime`` package).
    ridge : float, default=1.0
        L2 penalty of the surrogate.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a removed feature becomes.
    activation : {"softmax", "logits"}, default="softmax"
        LIME explains probabilities (``classifier_fn``) by default.
    seed : int, default=0

    References
    ----------
    Ribeiro, Singh, Guestrin, "'Why Should I Trust You?': Explaining the Predictions of Any
    Classifier", KDD 2016.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="lime", regions="patches:4",
    ...                        n_samples=64)
    >>> exp.attributions.shape
    torch.Size([2, 1, 8, 8])
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "n_samples": [Interval(int, 2)],
        "kernel_width": [Interval(float, 0.0, closed="right")],
        "ridge": [Interval(float, 0.0)],
        "fill": FILL,
        "activation": [ACTIVATION],
        "seed": [SEED],
    }

    regions: RegionsLike = "slic:25"
    n_samples: int = 1000
    kernel_width: float = 0.25
    ridge: float = 1.0
    fill: FillSpec = 0.0
    activation: Activation = "softmax"
    seed: int = 0

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = make_features(self.regions, inputs)
        check_fit_memory("LIME", fit_bytes, features.count, self.n_samples, device=inputs.device)
        generator = torch.Generator().manual_seed(self.seed)
        keep = lime_coalitions(features.count, self.n_samples, generator).to(inputs.device)
        scores = score_coalitions(
            model,
            inputs,
            target,
            features,
            self.fill,
            lambda indices: keep[indices],
            self.n_samples,
            activation=self.activation,
        )
        weights = cosine_kernel(keep, self.kernel_width)
        coefficients, _ = weighted_least_squares(keep, weights, scores, ridge=self.ridge)
        return features.paint(coefficients.to(inputs.dtype))
