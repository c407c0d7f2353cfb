"""Feature ablation, KernelSHAP and LIME over prompt features, every generated step at once.

Each method scores coalitions of prompt features (:meth:`GenerationTask.score_keeps`): one
teacher-forced forward pass per coalition gives the targets of all ``S`` steps, so a coalition
is shared by every step and the fits of :mod:`faithmap.methods.kernel_shap` and
:mod:`faithmap.methods.lime` are solved for all steps at once (the steps play the part of the
batch's inputs there). Captum's ``LLMAttribution`` scores each coalition the same way
(``forward_in_tokens=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, SEED, Constraints, Interval
from faithmap.generation.method import (
    GenerationMethod,
    GenerationTask,
    register_generation_method,
)
from faithmap.methods.coalitions import check_fit_memory, weighted_least_squares
from faithmap.methods.kernel_shap import KernelShap, constrained_shapley_fit
from faithmap.methods.kernel_shap import fit_bytes as shap_bytes
from faithmap.methods.lime import cosine_kernel, lime_coalitions
from faithmap.methods.lime import fit_bytes as lime_bytes


@register_generation_method("feature_ablation")
@dataclass(frozen=True, kw_only=True)
class GenerationFeatureAblation(GenerationMethod):
    """Feature ablation: each step's target on the prompt minus its target with one feature
    removed, ``F + 1`` forward passes for all steps (Captum's ``FeatureAblation`` sign).

    References
    ----------
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
    (occlusion); Li, Monroe, Jurafsky, "Understanding Neural Networks through Representation
    Erasure", 2016 (erasure of words).
    """

    def attribute(self, task: GenerationTask) -> Tensor:
        count = task.features.count
        keep = torch.cat([torch.ones(1, count), 1.0 - torch.eye(count)])
        scores = task.score_keeps(keep)
        return (scores[:1] - scores[1:]).T


@register_generation_method("kernel_shap")
@dataclass(frozen=True, kw_only=True)
class GenerationKernelShap(GenerationMethod):
    """KernelSHAP over prompt features, fitted for every step from the same coalitions.

    Exact Shapley values when ``2**F <= n_samples`` (or ``exact=True``), else ``n_samples``
    coalitions drawn from the Shapley kernel in complementary pairs, as
    :class:`faithmap.methods.kernel_shap.KernelShap` does; values sum to each step's target on
    the prompt minus its target with every feature removed.

    Parameters
    ----------
    n_samples : int, default=1000
    exact : bool or None, default=None
    seed : int, default=0

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017;
    Covert, Lee, "Improving KernelSHAP", AISTATS 2021.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "n_samples": [Interval(int, 4)],
        "exact": [BOOLEAN, None],
        "seed": [SEED],
    }

    n_samples: int = 1000
    exact: bool | None = None
    seed: int = 0

    def attribute(self, task: GenerationTask) -> Tensor:
        count = task.features.count
        check_fit_memory("KernelSHAP", shap_bytes, count, self.n_samples, device=task.device)
        sampler = KernelShap(n_samples=self.n_samples, exact=self.exact, seed=self.seed)
        coalitions, weights = sampler.coalitions(count)
        ends = torch.stack([torch.ones(count), torch.zeros(count)]).double()
        keep = torch.cat([ends, coalitions])
        scores = task.score_keeps(keep).T.double().cpu()
        return constrained_shapley_fit(
            keep[2:], weights, scores[:, 2:], scores[:, 0], scores[:, 1]
        ).float()


@register_generation_method("lime")
@dataclass(frozen=True, kw_only=True)
class GenerationLime(GenerationMethod):
    """LIME over prompt features: a weighted ridge surrogate per step on shared coalitions.

    The coalitions, the cosine kernel and the ridge fit are those of
    :class:`faithmap.methods.lime.Lime`; the surrogate explains each step's target (a
    log-probability, not a probability).

    Parameters
    ----------
    n_samples : int, default=200
    kernel_width : float, default=0.25
    ridge : float, default=1.0
    seed : int, default=0

    References
    ----------
    Ribeiro, Singh, Guestrin, "'Why Should I Trust You?'", KDD 2016.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "n_samples": [Interval(int, 2)],
        "kernel_width": [Interval(float, 0.0, closed="right")],
        "ridge": [Interval(float, 0.0)],
        "seed": [SEED],
    }

    n_samples: int = 200
    kernel_width: float = 0.25
    ridge: float = 1.0
    seed: int = 0

    def attribute(self, task: GenerationTask) -> Tensor:
        count = task.features.count
        check_fit_memory("LIME", lime_bytes, count, self.n_samples, device=task.device)
        generator = torch.Generator().manual_seed(self.seed)
        keep = lime_coalitions(count, self.n_samples, generator)
        scores = task.score_keeps(keep).T.double().cpu()
        weights = cosine_kernel(keep, self.kernel_width)
        coefficients, _ = weighted_least_squares(keep, weights, scores, ridge=self.ridge)
        return coefficients.float()
