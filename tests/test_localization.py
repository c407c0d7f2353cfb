"""Localisation metrics against hand-computed scores, a brute-force pointing game, and pitfalls."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.data.synthetic import make_shapes
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics import (
    METRICS,
    centre_baseline,
    energy_pointing_game,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)

LOCALISATION = (
    "pointing_game",
    "energy_pointing_game",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "top_k_intersection",
)


def box(n: int, height: int, width: int, rows: slice, cols: slice) -> torch.Tensor:
    masks = torch.zeros(n, 1, height, width, dtype=torch.bool)
    masks[:, :, rows, cols] = True
    return masks


def peak_at(height: int, width: int, row: int, col: int) -> torch.Tensor:
    """A map (1, 1, H, W) of small noise with its only maximum at (row, col)."""
    noise = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(row * 31 + col))
    noise[0, 0, row, col] = 2.0
    return noise


def brute_force_hit(saliency: torch.Tensor, mask: torch.Tensor, tolerance: int) -> bool:
    """TorchRay's rule, loop by loop: a mask pixel at distance^2 < tolerance^2 of the argmax."""
    height, width = saliency.shape
    flat = int(saliency.flatten().argmax())
    row, col = divmod(flat, width)
    for r in range(height):
        for c in range(width):
            d2 = (r - row) ** 2 + (c - col) ** 2
            if mask[r, c] and (d2 < tolerance**2 or d2 == 0):
                return True
    return False


# ------------------------------------------------------------------ pointing game
def test_pointing_game_hit_and_miss_on_a_non_square_image() -> None:
    # 6 x 10 image, object off-centre at rows 1-2, columns 6-8.
    masks = box(1, 6, 10, slice(1, 3), slice(6, 9))
    assert pointing_game(peak_at(6, 10, 1, 7), masks, tolerance=0).values.tolist() == [1.0]
    # A transposed reading of the peak (flat index 17 as (17 // 6, 17 % 6) = (2, 5)) misses.
    assert pointing_game(peak_at(6, 10, 2, 5), masks, tolerance=0).values.tolist() == [0.0]


def test_pointing_game_tolerance_is_an_open_disc() -> None:
    masks = box(1, 6, 10, slice(1, 3), slice(6, 9))
    saliency = peak_at(6, 10, 4, 2)  # nearest mask pixel (2, 6): distance^2 = 4 + 16 = 20
    assert pointing_game(saliency, masks, tolerance=4).values.tolist() == [0.0]  # 16 < 20
    assert pointing_game(saliency, masks, tolerance=5).values.tolist() == [1.0]  # 20 < 25
    # distance^2 = 25 exactly: not strictly inside a disc of radius 5 (TorchRay's "<").
    edge = peak_at(6, 10, 5, 2)  # nearest mask pixel (2, 6): 9 + 16 = 25
    assert pointing_game(edge, masks, tolerance=5).values.tolist() == [0.0]


def test_pointing_game_matches_a_brute_force_torchray_rule() -> None:
    generator = torch.Generator().manual_seed(3)
    saliency = torch.rand(40, 1, 12, 9, generator=generator)
    masks = torch.rand(40, 1, 12, 9, generator=generator) > 0.93
    for tolerance in (0, 1, 2, 3, 15):
        got = pointing_game(saliency, masks, tolerance=tolerance).values
        for i in range(40):
            if not masks[i].any():
                assert math.isnan(got[i])
            else:
                assert got[i] == float(brute_force_hit(saliency[i, 0], masks[i, 0], tolerance))


def test_empty_mask_is_not_a_hit() -> None:
    # Quantus' pointing game stores NaN into a boolean array, which counts empty masks as hits.
    masks = box(2, 8, 8, slice(0, 2), slice(0, 2))
    masks[1] = False
    saliency = torch.zeros(2, 1, 8, 8)
    saliency[:, 0, 7, 7] = 1.0  # both miss the box
    result = pointing_game(saliency, masks, tolerance=0)
    assert result.values[0] == 0.0 and math.isnan(result.values[1])
    assert result.mean == 0.0
    assert result.choices["empty_mask"] == "nan"


def test_ties_go_to_the_first_maximum_in_row_major_order() -> None:
    masks = box(1, 5, 7, slice(0, 1), slice(0, 1))
    assert pointing_game(torch.ones(1, 1, 5, 7), masks, tolerance=0).values.tolist() == [1.0]


def test_per_class_and_pooled_means_from_labels() -> None:
    masks = box(3, 8, 8, slice(0, 2), slice(0, 2))
    saliency = torch.zeros(3, 1, 8, 8)
    saliency[0, 0, 0, 0] = 1.0  # hit
    saliency[1, 0, 7, 7] = 1.0  # miss
    saliency[2, 0, 1, 1] = 1.0  # hit
    result = pointing_game(saliency, masks, tolerance=0, labels=[0, 0, 1])
    assert result.per_class == {0: 0.5, 1: 1.0}
    assert result.class_mean == pytest.approx(0.75)
    assert result.mean == pytest.approx(2 / 3)
    assert result.choices["classes"] == "labels"


def test_per_class_reads_the_explained_class() -> None:
    masks = box(3, 8, 8, slice(0, 2), slice(0, 2))
    saliency = torch.zeros(3, 1, 8, 8)
    saliency[0, 0, 0, 0] = 1.0
    saliency[1, 0, 7, 7] = 1.0
    saliency[2, 0, 1, 1] = 1.0
    explanation = Explanation(
        attributions=saliency,
        method="test",
        config={},
        target=torch.tensor([2, 5, 5]),
        cost=Cost(),
    )
    result = pointing_game(explanation, masks, tolerance=0)
    assert result.per_class == {2: 1.0, 5: 0.5}
    assert result.classes is not None and result.classes.tolist() == [2, 5, 5]
    assert result.choices["classes"] == "explained"


def test_centre_baseline_peaks_at_the_centre() -> None:
    for height, width in ((6, 10), (7, 5), (224, 224)):
        saliency = centre_baseline(torch.zeros(2, 3, height, width))
        assert saliency.shape == (2, 1, height, width)
        flat = int(saliency[1].flatten().argmax())
        assert divmod(flat, width) == (height // 2, width // 2)
        assert int((saliency[1] == saliency[1].max()).sum()) == 1


def test_centre_baseline_hits_a_centred_object_and_misses_a_corner_one() -> None:
    masks = torch.cat(
        [box(1, 32, 48, slice(12, 20), slice(20, 28)), box(1, 32, 48, slice(0, 4), slice(0, 4))]
    )
    result = pointing_game(centre_baseline(masks), masks, tolerance=3)
    assert result.values.tolist() == [1.0, 0.0]


def test_synthetic_object_masks_are_found_and_random_maps_mostly_miss() -> None:
    batch = make_shapes(24, seed=2, size=32)
    oracle = batch.masks.float() + 0.01 * torch.rand(batch.masks.shape)
    assert pointing_game(oracle, batch.masks, tolerance=0).mean == 1.0
    assert energy_pointing_game(batch.masks.float(), batch.masks).mean == 1.0
    assert relevance_rank_accuracy(oracle, batch.masks).mean == 1.0
    random_maps = torch.rand(batch.masks.shape, generator=torch.Generator().manual_seed(0))
    coverage = float(batch.masks.float().mean())
    assert pointing_game(random_maps, batch.masks, tolerance=0).mean < 0.5
    # A random map's energy on the object is about the object's share of the image.
    assert energy_pointing_game(random_maps, batch.masks).mean == pytest.approx(coverage, abs=0.05)


# ------------------------------------------------------------------ energy and mass
MAP = torch.tensor([[[[3.0, 1.0], [-5.0, 4.0]]]])
TOP_ROW = torch.tensor([[[[True, True], [False, False]]]])


def test_energy_pointing_game_by_hand() -> None:
    assert energy_pointing_game(MAP, TOP_ROW).values.tolist() == [pytest.approx(4 / 8)]
    assert energy_pointing_game(MAP, TOP_ROW, part="absolute").values.tolist() == [
        pytest.approx(4 / 13)
    ]
    # Min-max (Score-CAM's code): a - min = [8, 6, 0, 9].
    assert energy_pointing_game(MAP, TOP_ROW, part="minmax").values.tolist() == [
        pytest.approx(14 / 23)
    ]


def test_relevance_mass_accuracy_by_hand() -> None:
    assert relevance_mass_accuracy(MAP, TOP_ROW).values.tolist() == [pytest.approx(0.5)]
    assert relevance_mass_accuracy(MAP, TOP_ROW, part="signed").values.tolist() == [
        pytest.approx(4 / 3)
    ]
    assert relevance_mass_accuracy(MAP, TOP_ROW, part="absolute").values.tolist() == [
        pytest.approx(4 / 13)
    ]


@pytest.mark.parametrize("metric", [energy_pointing_game, relevance_mass_accuracy])
def test_mass_perfect_worst_and_undefined(metric: object) -> None:
    masks = box(4, 6, 10, slice(1, 3), slice(6, 9))
    masks[3] = False
    saliency = torch.zeros(4, 1, 6, 10)
    saliency[0] = masks[0].float() * 2.0  # all energy on the object
    saliency[1] = (~masks[1]).float()  # all energy off the object
    saliency[2] = -1.0  # no positive energy
    saliency[3] = 1.0  # empty mask
    values = metric(saliency, masks).values  # type: ignore[operator]
    assert values[0] == 1.0 and values[1] == 0.0
    assert math.isnan(values[2]) and math.isnan(values[3])


def test_boxes_are_not_transposed() -> None:
    # Score-CAM's reference indexes [x1:x2, y1:y2] on a (w, h) array; here rows are rows.
    masks = box(1, 6, 10, slice(0, 2), slice(5, 10))  # rows 0-1, columns 5-9
    saliency = torch.zeros(1, 1, 6, 10)
    saliency[0, 0, 0:2, 5:10] = 1.0
    assert energy_pointing_game(saliency, masks).values.tolist() == [1.0]
    with pytest.raises(ShapeError, match="row, column"):
        energy_pointing_game(saliency, masks.transpose(2, 3))


# ------------------------------------------------------------------ rank and top-k
def test_relevance_rank_accuracy_by_hand() -> None:
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, :] = True  # K = 4
    saliency = torch.arange(16.0).view(1, 1, 4, 4)  # top 4: the bottom row
    assert relevance_rank_accuracy(saliency, masks).values.tolist() == [0.0]
    assert relevance_rank_accuracy(-saliency, masks).values.tolist() == [1.0]
    half = torch.zeros(1, 1, 4, 4)
    half[0, 0, 0, :2] = 5.0
    half[0, 0, 3, :2] = 4.0  # top 4: two on the mask, two off
    assert relevance_rank_accuracy(half, masks).values.tolist() == [0.5]


def test_top_k_intersection_by_hand_and_k_bound() -> None:
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :, 0] = True
    saliency = torch.zeros(1, 1, 4, 4)
    saliency[0, 0, 0, 0], saliency[0, 0, 1, 0], saliency[0, 0, 2, 2] = 3.0, 2.0, 1.0
    assert top_k_intersection(saliency, masks, k=3).values.tolist() == [pytest.approx(2 / 3)]
    assert top_k_intersection(saliency, masks, k=2).values.tolist() == [1.0]
    with pytest.raises(InvalidParameterError, match="at most the number of pixels, 16"):
        top_k_intersection(saliency, masks)


def test_ties_are_broken_by_the_seed() -> None:
    masks = torch.zeros(30, 1, 8, 8, dtype=torch.bool)
    masks[:, :, :4] = True  # half the image
    flat = torch.zeros(30, 1, 8, 8)
    first = relevance_rank_accuracy(flat, masks, seed=1).values
    assert torch.equal(first, relevance_rank_accuracy(flat, masks, seed=1).values)
    assert not torch.equal(first, relevance_rank_accuracy(flat, masks, seed=2).values)
    assert 0.3 < float(first.mean()) < 0.7  # a random half, not the first pixels (which hit)


# ------------------------------------------------------------------ shared behaviour
@pytest.mark.parametrize("name", LOCALISATION)
def test_batch_size_invariance_and_zero_cost(name: str) -> None:
    batch = make_shapes(6, seed=5, size=32)
    saliency = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    params = {"k": 50} if name == "top_k_intersection" else {}
    whole = METRICS[name].run(None, batch.images, saliency, masks=batch.masks, **params)
    parts = [
        METRICS[name]
        .run(
            None,
            batch.images[i : i + 1],
            saliency[i : i + 1],
            masks=batch.masks[i : i + 1],
            **params,
        )
        .values
        for i in range(6)
    ]
    torch.testing.assert_close(whole.values, torch.cat(parts))
    assert whole.cost.passes == 0 and whole.higher_is_better
    assert METRICS[name].needs_masks and not METRICS[name].needs_model


def test_channels_are_summed_signed() -> None:
    masks = box(1, 4, 4, slice(0, 1), slice(0, 1))
    saliency = torch.zeros(1, 3, 4, 4)
    saliency[0, 0, 0, 0], saliency[0, 1, 0, 0] = 5.0, -5.0  # cancels at (0, 0)
    saliency[0, 2, 3, 3] = 1.0
    assert pointing_game(saliency, masks, tolerance=0).values.tolist() == [0.0]


def test_integer_masks_are_accepted_and_other_values_refused() -> None:
    masks = box(1, 4, 4, slice(0, 2), slice(0, 2))
    saliency = masks.float()
    assert energy_pointing_game(saliency, masks.long()).values.tolist() == [1.0]
    with pytest.raises(ShapeError, match="threshold them"):
        energy_pointing_game(saliency, masks.float() * 0.5)


def test_bad_parameters_raise_clear_errors() -> None:
    masks = box(1, 4, 4, slice(0, 2), slice(0, 2))
    with pytest.raises(InvalidParameterError, match="'tolerance' parameter of pointing_game"):
        pointing_game(masks.float(), masks, tolerance=-1)
    with pytest.raises(InvalidParameterError, match="'part' parameter of energy_pointing_game"):
        energy_pointing_game(masks.float(), masks, part="signed")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'labels' parameter"):
        pointing_game(masks.float(), masks, labels=[0, 1])
    with pytest.raises(ShapeError, match="NaN"):
        pointing_game(torch.full((1, 1, 4, 4), math.nan), masks)
    with pytest.raises(InvalidParameterError, match="ground-truth masks"):
        METRICS["pointing_game"].run(None, torch.zeros(1, 1, 4, 4), masks.float())


def test_agrees_with_quantus_on_signed_unnormalised_maps() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    generator = torch.Generator().manual_seed(0)
    saliency = torch.randn(6, 1, 8, 8, generator=generator)
    masks = torch.rand(6, 1, 8, 8, generator=generator) > 0.7
    data: dict[str, Any] = {
        "model": None,
        "x_batch": torch.rand(6, 1, 8, 8).numpy(),
        "y_batch": np.zeros(6, dtype=int),
        "a_batch": saliency.numpy(),
        "s_batch": masks.float().numpy(),
    }
    settings: dict[str, Any] = {"normalise": False, "abs": False, "disable_warnings": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mass = quantus.RelevanceMassAccuracy(**settings)(**data)
        rank = quantus.RelevanceRankAccuracy(**settings)(**data)
        top = quantus.TopKIntersection(k=10, **settings)(**data)
    ours = {
        "mass": relevance_mass_accuracy(saliency, masks, part="signed").values,
        "rank": relevance_rank_accuracy(saliency, masks).values,
        "top": top_k_intersection(saliency, masks, k=10).values,
    }
    for key, theirs in (("mass", mass), ("rank", rank), ("top", top)):
        torch.testing.assert_close(
            ours[key].double(), torch.tensor(np.asarray(theirs, dtype=float)), rtol=1e-5, atol=1e-6
        )
