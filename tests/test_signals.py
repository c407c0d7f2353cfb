"""1-D signals ``(N, C, T)``: methods find the known burst window, metrics score segments.

:func:`faithmap.data.signals.make_signals` puts one class burst in each signal, and
:class:`~faithmap.testing.standins.BurstDetector` classifies by matched filters, so the model's
evidence is exactly the burst window: a faithful method puts its largest attributions there.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import faithmap
from faithmap.data.signals import BURST, SignalsBatch, make_signals
from faithmap.metrics import deletion, insertion, pointing_game, relevance_mass_accuracy
from faithmap.testing.standins import BurstDetector

METHODS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "integrated_gradients": {"steps": 16},
    "occlusion": {"window": (1, 16), "stride": (1, 16)},
    "rise": {"n_masks": 300, "seed": 0},
    "kernel_shap": {"regions": "patches:32", "n_samples": 300, "seed": 0},
    "feature_ablation": {"regions": "patches:32"},
}


@pytest.fixture(scope="module")
def batch() -> SignalsBatch:
    return make_signals(4, length=512, seed=3)


@pytest.fixture(scope="module")
def model() -> faithmap.Model:
    return faithmap.Model(BurstDetector(), batch_size=64)


def test_the_burst_detector_reads_the_bursts(batch: SignalsBatch, model: faithmap.Model) -> None:
    assert bool((model.predict(batch.signals) == batch.labels).all())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_methods_find_the_burst_window(
    method: str, batch: SignalsBatch, model: faithmap.Model
) -> None:
    signals, masks = batch.signals, batch.masks
    explanation = faithmap.explain(model, signals, method=method, **METHODS[method])
    assert explanation.attributions.shape == (4, 1, 512)
    assert bool((pointing_game(explanation, masks).values == 1).all())
    maps = explanation.attributions[:, 0]
    inside = (maps * masks[:, 0]).sum(1) / masks[:, 0].sum(1)
    outside = (maps * ~masks[:, 0]).sum(1) / (~masks[:, 0]).sum(1)
    assert bool((inside > outside).all()), (inside, outside)
    if method != "rise":  # RISE's map is E[score | sample kept]: positive everywhere
        # the window is 64 of 512 samples: a map that ignores it puts 1/8 of its mass there
        mass = relevance_mass_accuracy(explanation.attributions.abs(), masks).values
        assert float(mass.min()) > 0.5, mass


def test_insertion_and_deletion_run_over_segments(
    batch: SignalsBatch, model: faithmap.Model
) -> None:
    signals, masks = batch.signals, batch.masks
    truth = masks.float()  # the ground truth itself, as an explanation
    noise = torch.rand(
        signals.shape[0], 1, signals.shape[-1], generator=torch.Generator().manual_seed(0)
    )
    kwargs: dict[str, Any] = {"steps": 8, "unit": f"patches:{BURST // 2}", "fill": 0.0}
    good = insertion(model, signals, truth, **kwargs).values
    bad = insertion(model, signals, noise, **kwargs).values
    assert bool((good > bad).all()), (good, bad)
    assert bool(
        (
            deletion(model, signals, truth, **kwargs).values
            < deletion(model, signals, noise, **kwargs).values
        ).all()
    )
