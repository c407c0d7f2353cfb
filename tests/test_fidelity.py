"""Fidelity metrics on a linear model, where the right attribution is known, and against Captum."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.metrics import infidelity as captum_infidelity
from torch import nn

import faithmap
from faithmap import Model
from faithmap.metrics import (
    faithfulness_correlation,
    faithfulness_estimate,
    gaussian_perturbations,
    infidelity,
)

GENERATOR = torch.Generator().manual_seed(0)
WEIGHTS = torch.randn(3, 8, 8, generator=GENERATOR)
IMAGES = torch.rand(4, 3, 8, 8, generator=GENERATOR) + 0.5
# f(x) = w . x: removing a set S (fill 0) drops the score by exactly sum over S of w * x.
EXACT = (WEIGHTS * IMAGES).sum(1, keepdim=True)


def linear(x: torch.Tensor) -> torch.Tensor:
    score = (x * WEIGHTS).flatten(1).sum(1)
    return torch.stack([score, -score], dim=1)


def linear_model(batch_size: int = 7) -> Model:
    return Model(linear, batch_size=batch_size)


def constant(x: torch.Tensor) -> torch.Tensor:
    return torch.tensor([[0.2, 0.8]]).expand(x.shape[0], 2)


@pytest.mark.parametrize("kind", ["pearson", "spearman"])
def test_correlation_of_exact_and_reversed_attributions(kind: str) -> None:
    kwargs: dict[str, Any] = {"target": 0, "subset_size": 6, "n_samples": 12, "correlation": kind}
    best = faithfulness_correlation(linear_model(), IMAGES, EXACT, **kwargs)
    worst = faithfulness_correlation(linear_model(), IMAGES, -EXACT, **kwargs)
    torch.testing.assert_close(best.values, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(worst.values, -torch.ones(4, dtype=torch.float64))
    assert best.higher_is_better and best.choices["correlation"] == kind
    # 12 subsets plus the clean input per image; the target is given, so nothing else.
    assert best.cost.forward == 4 * 13


def test_whole_pixels_are_removed_with_a_one_channel_map() -> None:
    # Regression: Quantus removes single channel values, so a pixel map cannot be exact; here
    # the channel-summed map of a linear model is exact for whole pixels and for patches.
    for unit in ("pixel", "patches:2"):
        result = faithfulness_correlation(
            linear_model(), IMAGES, EXACT, target=0, subset_size=3, n_samples=10, unit=unit
        )
        torch.testing.assert_close(result.values, torch.ones(4, dtype=torch.float64))


def test_removing_pixels_in_place_equals_removing_one_pixel_regions() -> None:
    # "pixel" writes the fill into the chosen pixels only; a label map with one region per
    # pixel takes the general path (blend whole images). Same draws, so the same rows.
    attributions = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    one_per_pixel = torch.arange(64).view(1, 8, 8).expand(4, 8, 8)
    for fill in (0.25, "blur"):
        kwargs: dict[str, Any] = {"target": 0, "subset_size": 6, "n_samples": 9, "fill": fill}
        pixels = faithfulness_correlation(linear_model(), IMAGES, attributions, **kwargs)
        regions = faithfulness_correlation(
            linear_model(), IMAGES, attributions, unit=one_per_pixel, **kwargs
        )
        torch.testing.assert_close(pixels.values, regions.values)
        single = faithfulness_estimate(linear_model(), IMAGES, attributions, target=0, fill=fill)
        labelled = faithfulness_estimate(
            linear_model(), IMAGES, attributions, target=0, fill=fill, unit=one_per_pixel
        )
        torch.testing.assert_close(single.values, labelled.values)


def test_correlation_is_nan_where_undefined() -> None:
    flat = faithfulness_correlation(
        Model(constant), IMAGES, EXACT, target=1, subset_size=6, n_samples=10
    )
    assert bool(flat.values.isnan().all())
    uniform = faithfulness_correlation(
        linear_model(), IMAGES, torch.ones(4, 1, 8, 8), target=0, subset_size=6, n_samples=10
    )
    assert bool(uniform.values.isnan().all())


def test_correlation_batch_size_seed_and_subset_size() -> None:
    attributions = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    kwargs: dict[str, Any] = {"target": 0, "subset_size": 6, "n_samples": 10}
    small = faithfulness_correlation(linear_model(3), IMAGES, attributions, **kwargs)
    large = faithfulness_correlation(linear_model(64), IMAGES, attributions, **kwargs)
    torch.testing.assert_close(small.values, large.values)
    other = faithfulness_correlation(linear_model(3), IMAGES, attributions, seed=1, **kwargs)
    assert not torch.equal(small.values, other.values)
    with pytest.raises(faithmap.InvalidParameterError, match="subset_size"):
        faithfulness_correlation(linear_model(), IMAGES, attributions, subset_size=64)


def test_estimate_of_exact_and_reversed_attributions() -> None:
    for unit in ("pixel", "patches:4"):
        best = faithfulness_estimate(linear_model(), IMAGES, EXACT, target=0, unit=unit)
        worst = faithfulness_estimate(linear_model(), IMAGES, -EXACT, target=0, unit=unit)
        torch.testing.assert_close(best.values, torch.ones(4, dtype=torch.float64))
        torch.testing.assert_close(worst.values, -torch.ones(4, dtype=torch.float64))
    assert best.cost.forward == 4 * (4 + 1)


def test_estimate_nan_for_a_model_that_ignores_its_input_and_batch_invariance() -> None:
    flat = faithfulness_estimate(Model(constant), IMAGES, EXACT, target=1, unit="patches:4")
    assert bool(flat.values.isnan().all())
    attributions = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    small = faithfulness_estimate(linear_model(3), IMAGES, attributions, target=0)
    large = faithfulness_estimate(linear_model(64), IMAGES, attributions, target=0)
    torch.testing.assert_close(small.values, large.values)


def test_infidelity_of_exact_attributions_is_zero() -> None:
    for normalize in (False, True):
        result = infidelity(
            linear_model(), IMAGES, WEIGHTS.expand(4, 3, 8, 8), target=0, normalize=normalize
        )
        torch.testing.assert_close(result.values, torch.zeros(4, dtype=torch.float64))
        assert not result.higher_is_better


def test_infidelity_of_zero_attributions_is_the_mean_squared_drop() -> None:
    shifts = gaussian_perturbations(IMAGES, 20, 0.1, seed=3)
    drops = (shifts * WEIGHTS).flatten(2).sum(2).double()
    result = infidelity(
        linear_model(), IMAGES, torch.zeros(4, 3, 8, 8), target=0, n_samples=20, seed=3
    )
    # the model runs in float32, so compare at float32 precision
    torch.testing.assert_close(result.values.float(), drops.pow(2).mean(1).float())


def test_normalized_infidelity_is_scale_free_and_zero_for_a_flat_model() -> None:
    attributions = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    one = infidelity(linear_model(), IMAGES, attributions, target=0)
    scaled = infidelity(linear_model(), IMAGES, 1000 * attributions, target=0)
    torch.testing.assert_close(one.values, scaled.values)
    flat = infidelity(Model(constant), IMAGES, attributions, target=1)
    torch.testing.assert_close(flat.values, torch.zeros(4, dtype=torch.float64))


def test_infidelity_batch_size_and_seed() -> None:
    attributions = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    small = infidelity(linear_model(3), IMAGES, attributions, target=0, normalize=False)
    large = infidelity(linear_model(64), IMAGES, attributions, target=0, normalize=False)
    torch.testing.assert_close(small.values, large.values)
    other = infidelity(linear_model(3), IMAGES, attributions, target=0, seed=2)
    assert not torch.equal(small.values, other.values)


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_agrees_with_captum(
    images: torch.Tensor, tiny_net: nn.Module, normalize: bool
) -> None:
    attributions = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    targets = torch.tensor([0, 1, 2, 3, 1])
    shifts = gaussian_perturbations(images, 6, 0.1, seed=0)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = shifts.flatten(0, 1)
        return flat, inputs - flat

    expected = captum_infidelity(
        tiny_net,
        perturb,
        images,
        attributions,
        target=targets,
        n_perturb_samples=6,
        normalize=normalize,
    )
    result = infidelity(
        Model(tiny_net, batch_size=8),
        images,
        attributions,
        target=targets,
        perturbations=shifts,
        n_samples=6,
        normalize=normalize,
    )
    torch.testing.assert_close(result.values.float(), expected, atol=1e-5, rtol=1e-5)
    assert result.choices["perturbation"] == "given"
