"""The contract every registered method and metric keeps: the batteries of faithmap.testing.

Each check of :func:`faithmap.testing.method_checks` and :func:`faithmap.testing.metric_checks`
is its own test (``test_method_contract[occlusion-sample_independence]``), run with cheap
settings so that the whole file stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import faithmap
from conftest import TinyNet, light_params
from faithmap import Model
from faithmap.testing import (
    FailsAfter,
    check_registered_methods,
    method_checks,
    metric_checks,
)

METHODS = faithmap.METHODS.names()
METRICS = faithmap.METRICS.names()

LIGHT_METRIC_PARAMS: dict[str, dict[str, Any]] = {
    "avg_sensitivity": {"n_samples": 2},
    "max_sensitivity": {"n_samples": 2},
    "local_lipschitz": {"n_samples": 4},
    "relative_input_stability": {"n_samples": 2},
    # ROS divides by ||h(x) - h(x')||, a difference of nearly equal logits: at a radius the
    # battery's net barely moves under, batch-size rounding (1e-7) shows at 1e-4 relative
    "relative_output_stability": {"n_samples": 2, "radius": 0.2},
    "relative_representation_stability": {"n_samples": 2, "layer": "features.2"},
    "smooth_model_randomisation": {"n_samples": 2},
    "deletion": {"steps": 4},
    "insertion": {"steps": 4},
    "faithfulness_correlation": {"n_samples": 8, "unit": "patches:4", "subset_size": 4},
    "faithfulness_estimate": {"unit": "patches:4"},
    "infidelity": {"n_samples": 8},
    "road": {"fractions": (0.2, 0.6)},
    "monotonicity": {"steps": 4},
    "monotonicity_correlation": {"steps": 8},
    "sensitivity_n": {"fractions": (0.1, 0.3), "n_samples": 4, "unit": "patches:4"},
    "selectivity": {"unit": "patches:4"},
    "irof": {"unit": "patches:4"},
    "top_k_intersection": {"k": 20},
    "box_energy_pointing_game": {"boxes": [(2.0, 2.0, 10.0, 10.0)] * 5},
    "highest_box_confidence": {"steps": 4, "iou_threshold": None},  # the battery has no boxes
}
"""Settings that keep every metric fast on the battery's 16x16 images."""


def light_metric_params(name: str) -> dict[str, Any]:
    """Fast settings for a registered metric (empty: its defaults)."""
    return dict(LIGHT_METRIC_PARAMS.get(name, {}))


def _params(
    names: list[str], checks: Callable[[str], Iterator[tuple[str, Callable[[], None]]]]
) -> list[Any]:
    return [
        pytest.param(check, id=f"{name}-{check_name}")
        for name in names
        for check_name, check in checks(name)
    ]


@pytest.mark.parametrize(
    "check", _params(METHODS, lambda name: method_checks(name, light_params(name)))
)
def test_method_contract(check: Callable[[], None]) -> None:
    check()


@pytest.mark.parametrize(
    "check", _params(METRICS, lambda name: metric_checks(name, light_metric_params(name)))
)
def test_metric_contract(check: Callable[[], None]) -> None:
    check()


def test_registry_has_the_first_methods() -> None:
    assert {"saliency", "integrated_gradients", "occlusion", "rise"} <= set(METHODS)


def test_every_concrete_method_is_registered() -> None:
    check_registered_methods()


def test_every_method_and_metric_has_a_light_setting_that_exists() -> None:
    """The cheap settings above name registered entries (a renamed one would go unnoticed)."""
    assert set(LIGHT_METRIC_PARAMS) <= set(METRICS)


def test_batched_run_is_not_slower_than_the_model_itself(tiny_net: TinyNet) -> None:
    """The model is called in batches, not once per perturbation."""
    counting = FailsAfter(tiny_net, n=10**9)
    model = Model(counting, batch_size=32)
    faithmap.explain(model, torch.rand(2, 3, 16, 16), method="rise", n_masks=64)
    # 1 call resolves the target (2 rows), 4 calls score 128 perturbations in batches of 32.
    assert counting.calls == 5
