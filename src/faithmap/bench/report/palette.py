"""Families and colours: which kind each method and metric is, and one colour per method.

Methods are grouped as the README's method table groups them (gradient, CAM, LRP,
perturbation, subset selection) and metrics as its metric table does (faithfulness,
localisation, robustness, complexity, sanity); a name faithmap does not know is ``"other"``.
Colours are generated, not picked from a fixed list, so they never repeat: ``n`` methods get
``n`` hues spaced ``360 / n`` degrees apart, in family order (a family is a band of neighbouring
hues), with the lightness alternating between neighbours so that two adjacent hues still
differ.

References
----------
Smith, A. R. "Color gamut transform pairs." SIGGRAPH 1978 (the HSL/HLS colour model).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from types import MappingProxyType

__all__ = [
    "FAMILIES",
    "METHOD_FAMILIES",
    "METRIC_FAMILIES",
    "method_colours",
    "method_family",
    "metric_family",
]

FAMILIES = (
    "gradient",
    "CAM",
    "LRP",
    "attention",
    "perturbation",
    "subset selection",
    "other",
)
"""Method families, in the order the report lists them."""

METHOD_FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "saliency",
                "input_x_gradient",
                "integrated_gradients",
                "smoothgrad",
                "gradient_shap",
                "guided_backprop",
                "deep_lift",
                "deep_shap",
            ),
            "gradient",
        ),
        **dict.fromkeys(
            (
                "grad_cam",
                "grad_cam_pp",
                "layer_cam",
                "score_cam",
                "eigen_cam",
                "hires_cam",
                "xgrad_cam",
                "ablation_cam",
                "full_grad",
            ),
            "CAM",
        ),
        "lrp": "LRP",
        "attn_lrp": "LRP",
        **dict.fromkeys(("attention_rollout", "attention_gradient"), "attention"),
        **dict.fromkeys(
            (
                "occlusion",
                "rise",
                "feature_ablation",
                "kernel_shap",
                "lime",
                "sobol",
                "hsic",
                "extremal",
                "d_rise",
                "shapley_sampling",
                "owen",
            ),
            "perturbation",
        ),
        **dict.fromkeys(("smdl", "lima", "vps"), "subset selection"),
    }
)
"""The family of each of faithmap's own methods."""

METRIC_FAMILIES: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "insertion",
                "deletion",
                "road",
                "faithfulness_correlation",
                "faithfulness_estimate",
                "infidelity",
                "highest_box_confidence",
                "monotonicity",
                "monotonicity_correlation",
                "irof",
                "selectivity",
                "sensitivity_n",
                "average_drop",
                "average_increase",
                "completeness",
            ),
            "faithfulness",
        ),
        **dict.fromkeys(
            (
                "pointing_game",
                "energy_pointing_game",
                "relevance_mass_accuracy",
                "relevance_rank_accuracy",
                "top_k_intersection",
                "top_k_features",
                "box_energy_pointing_game",
                "grid_pointing_game",
            ),
            "localisation",
        ),
        **dict.fromkeys(
            (
                "max_sensitivity",
                "avg_sensitivity",
                "local_lipschitz",
                "relative_input_stability",
                "relative_output_stability",
                "relative_representation_stability",
            ),
            "robustness",
        ),
        **dict.fromkeys(("sparseness", "complexity", "effective_complexity"), "complexity"),
        **dict.fromkeys(
            (
                "model_randomisation",
                "smooth_model_randomisation",
                "efficient_model_randomisation",
                "random_logit",
            ),
            "sanity",
        ),
    }
)
"""The family of each of faithmap's own metrics (``top_k_features``: tabular ground truth)."""


def method_family(name: str) -> str:
    """The family of a method, ``"other"`` for one faithmap does not know."""
    return METHOD_FAMILIES.get(name, "other")


def metric_family(name: str) -> str:
    """The family of a metric, ``"other"`` for one faithmap does not know."""
    return METRIC_FAMILIES.get(name, "other")


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """A distinct hex colour for each method: evenly spaced hues, in family order.

    Examples
    --------
    >>> colours = method_colours([f"m{k}" for k in range(40)])
    >>> len(set(colours.values()))
    40
    >>> method_colours(["saliency", "rise"])
    {'saliency': '#2e79d1', 'rise': '#976121'}
    """
    unique = list(dict.fromkeys(methods))
    ordered = sorted(unique, key=lambda m: FAMILIES.index(method_family(m)))
    colours = {}
    for k, method in enumerate(ordered):
        hue = (0.59 + k / max(len(ordered), 1)) % 1.0  # from blue round the circle
        lightness = 0.5 if k % 2 == 0 else 0.36
        red, green, blue = colorsys.hls_to_rgb(hue, lightness, 0.64)
        colours[method] = "#" + "".join(f"{round(255 * c):02x}" for c in (red, green, blue))
    return {m: colours[m] for m in unique}
