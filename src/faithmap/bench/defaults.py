"""Which methods the benchmark's built-in suites run, and with which parameters.

:data:`DEFAULT_METHODS` and :data:`DEFAULT_METHOD_PARAMS` are ``faithmap bench`` with no
options; :data:`FULL_METHODS` and :data:`FULL_METHOD_PARAMS` are ``--suite full``.
``benchmarks/default_bench_convergence.py`` measures the sampled methods' budgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_METHODS", "DEFAULT_METHOD_PARAMS", "FULL_METHODS", "FULL_METHOD_PARAMS"]

FULL_METHODS: tuple[str, ...] = (
    # gradient
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "gradient_shap",
    "guided_backprop",
    "deep_lift",
    "lrp",
    # class activation maps
    "grad_cam",
    "grad_cam_pp",
    "layer_cam",
    "score_cam",
    "eigen_cam",
    "hires_cam",
    "xgrad_cam",
    "ablation_cam",
    "full_grad",
    # perturbation
    "occlusion",
    "feature_ablation",
    "rise",
    "kernel_shap",
    "lime",
    "sobol",
    "hsic",
    "extremal",
    # subset selection
    "smdl",
    "lima",
)
"""Every image classifier method of every family: ``faithmap bench --suite full``. Left out:
D-RISE and VPS (object detection: the ``detection`` suite runs them) and DeepSHAP (with no
background given it is DeepLIFT). Any registered method can be named with ``--methods``."""

DEFAULT_METHODS: tuple[str, ...] = (
    "saliency",
    "integrated_gradients",  # gradient
    "grad_cam",  # class activation maps
    "lrp",  # layer-wise relevance propagation
    "occlusion",  # perturbation: sliding window,
    "rise",  # random masks,
    "kernel_shap",  # and a surrogate (Shapley values) on superpixels
    "lima",  # subset selection
)
"""The methods ``faithmap bench`` runs by default: every family of image classifier methods
(gradient, CAM, LRP, perturbation, subset selection), one or two each: 60 s of wall time and
115 CPU-seconds from an empty store on two idle cores (``benchmarks/default_bench_time.py``),
where :data:`FULL_METHODS` took 9 min, mostly RISE, SMDL, LiMA, extremal perturbation and the
metrics of 27 methods. An explicit list, so a newly registered method does not lengthen the
default run unseen."""

FULL_METHOD_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "rise": MappingProxyType({"n_masks": 1000}),
        "kernel_shap": MappingProxyType({"n_samples": 200}),
        "lime": MappingProxyType({"n_samples": 200}),
        "sobol": MappingProxyType({"n_design": 4}),
        "hsic": MappingProxyType({"n_design": 200}),
        "smdl": MappingProxyType({"regions": "slic:25"}),
        "lima": MappingProxyType({"regions": "slic:25"}),
        "vps": MappingProxyType({"regions": "slic:25"}),
        "d_rise": MappingProxyType({"n_masks": 1000}),
        "extremal": MappingProxyType({"iterations": 100}),
    }
)
"""Parameters of ``--suite full``, lighter than the methods' own defaults (RISE's 2000 masks,
KernelSHAP's and LIME's 1000 samples, Sobol's 32 designs, SMDL's and LiMA's 49 superpixels
and VPS's 64, whose searches cost about R^2 passes, D-RISE's 5000 masks, extremal
perturbation's 300 iterations)."""

DEFAULT_METHOD_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        **FULL_METHOD_PARAMS,
        "rise": MappingProxyType({"n_masks": 250}),
        "kernel_shap": MappingProxyType({"n_samples": 200}),
        "lima": MappingProxyType({"regions": "slic:16"}),
    }
)
"""Parameters the benchmark gives methods by default: those of :data:`FULL_METHOD_PARAMS`,
with RISE at 250 masks and LiMA on 16 superpixels (its search costs about R^2 passes: a third
of 25's). ``benchmarks/default_bench_convergence.py`` measures the smallest budget whose map's
Spearman rank correlation with a 4x budget's averages at least 0.9 on the built-in CNN and
ResNet: KernelSHAP's 200 samples (0.93 and 0.91). RISE reaches no such budget, nor one whose
mean insertion and deletion AUCs over 8 images stay within 0.01 of 4x's (``--criterion
scores``: gaps up to 0.03 at 250 masks and 0.04 at 500); both criteria improve from 125 to 250
masks and not from 250 to 500 (rank correlation 0.35 at both), so 250 is where more masks stop
buying measurable agreement: a cost choice. Every row records the full parameters used."""


LOCALISATION_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # TorchRay's 15 px tolerance at 224 px is about 4 px at the shapes' 64 px.
        "pointing_game": MappingProxyType({"tolerance": 4}),
        # The energy of Score-CAM's reference code (its min-max normalised map): with the
        # metric's default positive part the energy pointing game equals relevance mass
        # accuracy, and a suite would show the same column twice.
        "energy_pointing_game": MappingProxyType({"part": "minmax"}),
    }
)
"""The localisation metrics' parameters in the built-in suites (images of 64 px)."""
