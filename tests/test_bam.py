"""BAM: the data's construction, the metrics on hand-made maps, and what the shipped models use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from faithmap.data.bam import SCENE_NAMES, BamBatch, make_bam
from faithmap.data.synthetic import CLASS_NAMES
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics.bam import (
    input_dependence_rate,
    input_independence_rate,
    model_contrast_score,
    region_attribution,
)
from faithmap.zoo.bam import insignificant_patch, load_bam, main
from faithmap.zoo.train import accuracy

SIDE = 10


def block_mask(n: int = 1) -> torch.Tensor:
    """A 4 x 4 block at rows and columns 3-6 of a 10 x 10 image."""
    masks = torch.zeros(n, 1, SIDE, SIDE, dtype=torch.bool)
    masks[..., 3:7, 3:7] = True
    return masks


def map_with_statistic(value: float) -> torch.Tensor:
    """A 10 x 10 map whose BAM statistic on :func:`block_mask` is `value` by construction.

    Five pixels outside the block hold 1 (so the 99th percentile of the 100 values is 1), the
    other outside pixels hold 0 (the minimum) and the block holds `value`.
    """
    maps = torch.zeros(1, 1, SIDE, SIDE)
    maps[0, 0, 0, :5] = 1.0
    maps[0, 0, 3:7, 3:7] = value
    return maps


def test_scene_only_differs_from_the_image_exactly_on_the_object() -> None:
    batch = make_bam(60, seed=3, size=48)
    differs = (batch.images != batch.scene_only).any(dim=1, keepdim=True)
    assert torch.equal(differs, batch.masks)
    assert batch.images.shape == (60, 3, 48, 48)
    assert float(batch.images.min()) >= 0.0 and float(batch.images.max()) <= 1.0


def test_labels_are_balanced_and_every_object_meets_every_scene() -> None:
    n = len(CLASS_NAMES) * len(SCENE_NAMES) * 4
    batch = make_bam(n, seed=1, size=32)
    assert batch.object_labels.bincount().tolist() == [n // 6] * 6
    assert batch.scene_labels.bincount().tolist() == [n // 6] * 6
    pairs = batch.object_labels * len(SCENE_NAMES) + batch.scene_labels
    assert pairs.bincount().tolist() == [n // 36] * 36


def test_make_bam_is_deterministic_and_checks_its_arguments() -> None:
    assert torch.equal(make_bam(5, seed=2).images, make_bam(5, seed=2).images)
    assert not torch.equal(make_bam(5, seed=2).images, make_bam(5, seed=3).images)
    with pytest.raises(InvalidParameterError, match="size"):
        make_bam(5, size=16)


def test_region_statistic_of_a_ramp_by_hand() -> None:
    # Column index 0..9: min 0, 99th percentile 9 (the top 10 values are all 9).
    ramp = torch.arange(SIDE, dtype=torch.float32).expand(1, 1, SIDE, SIDE).clone()
    left = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    left[..., :5] = True
    expected = (0 + 1 + 2 + 3 + 4) / 9 / 5
    assert region_attribution(ramp, left).item() == pytest.approx(expected)
    # Signed map: only the positive part (0.5 ... 4.5 on the right half) counts, scaled by 4.5.
    right = ~left
    expected_right = (0.5 + 1.5 + 2.5 + 3.5 + 4.5) / 4.5 / 5
    assert region_attribution(ramp - 4.5, right).item() == pytest.approx(expected_right)
    assert region_attribution(ramp - 4.5, left).item() == pytest.approx(0.0)


def test_region_statistic_sums_positive_channel_values() -> None:
    maps = torch.zeros(1, 3, SIDE, SIDE)
    maps[0, 0] = map_with_statistic(0.5)[0, 0]
    maps[0, 1] = -map_with_statistic(0.5)[0, 0]  # negative values are dropped, not subtracted
    assert region_attribution(maps, block_mask()).item() == pytest.approx(0.5)


def test_region_statistic_is_nan_for_empty_masks_and_constant_maps() -> None:
    empty = torch.zeros(1, 1, SIDE, SIDE, dtype=torch.bool)
    assert region_attribution(map_with_statistic(0.3), empty).isnan().all()
    assert region_attribution(torch.ones(1, 1, SIDE, SIDE), block_mask()).isnan().all()


def test_model_contrast_of_perfect_and_inverted_maps() -> None:
    masks = make_bam(4, seed=0, size=32).masks
    perfect = masks.float()  # the object model attributes the object, the scene model the rest
    scene = (~masks).float()
    assert model_contrast_score(perfect, scene, masks).mean == pytest.approx(1.0)
    assert model_contrast_score(scene, perfect, masks).mean == pytest.approx(-1.0)
    assert model_contrast_score(perfect, perfect, masks).mean == pytest.approx(0.0)


def test_model_contrast_of_graded_maps_and_valid_samples() -> None:
    first = torch.cat([map_with_statistic(0.8), map_with_statistic(0.6), map_with_statistic(0.9)])
    second = torch.cat([map_with_statistic(0.2), map_with_statistic(0.6), map_with_statistic(0.1)])
    masks = block_mask(3)
    result = model_contrast_score(first, second, masks)
    torch.testing.assert_close(result.values, torch.tensor([0.6, 0.0, 0.8]))
    valid = torch.tensor([True, True, False])
    dropped = model_contrast_score(first, second, masks, valid=valid)
    assert dropped.values[2].isnan() and dropped.mean == pytest.approx(0.3)
    assert result.higher_is_better


def test_input_dependence_rate_by_hand() -> None:
    without = torch.cat([map_with_statistic(v) for v in (0.7, 0.5, 0.2, 0.9)])
    with_object = torch.cat([map_with_statistic(v) for v in (0.3, 0.5, 0.6, 0.1)])
    result = input_dependence_rate(without, with_object, block_mask(4))
    assert result.values.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert result.mean == pytest.approx(0.5)


def test_input_independence_rate_by_hand() -> None:
    without = torch.cat([map_with_statistic(v) for v in (0.5, 0.5, 0.5, 0.25)])
    with_patch = torch.cat([map_with_statistic(v) for v in (0.52, 0.6, 0.46, 0.3)])
    result = input_independence_rate(without, with_patch, block_mask(4))
    # |change| < 0.1 * 0.5 = 0.05 for the first and third; 0.05 > 0.025 for the fourth.
    assert result.values.tolist() == [1.0, 0.0, 1.0, 0.0]
    loose = input_independence_rate(without, with_patch, block_mask(4), tolerance=0.25)
    assert loose.values.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_bam_metrics_refuse_bad_input() -> None:
    maps = map_with_statistic(0.5)
    with pytest.raises(ShapeError, match="masks"):
        model_contrast_score(maps, torch.cat([maps, maps]), block_mask(1))
    with pytest.raises(ShapeError, match="valid"):
        model_contrast_score(maps, maps, block_mask(1), valid=torch.ones(2, dtype=torch.bool))
    with pytest.raises(InvalidParameterError, match="tolerance"):
        input_independence_rate(maps, maps, block_mask(1), tolerance=0.0)
    with pytest.raises(ShapeError, match="NaN"):
        region_attribution(maps * float("nan"), block_mask(1))


def test_load_bam_refuses_an_unknown_task() -> None:
    with pytest.raises(InvalidParameterError, match="task"):
        load_bam("texture")


def test_training_script_writes_both_models(tmp_path: Path) -> None:
    main(["--out-dir", str(tmp_path), "--n-train", "24", "--epochs", "1"])
    for task in ("object", "scene"):
        with safe_open(str(tmp_path / f"bam_{task}.safetensors"), "pt") as handle:
            assert handle.metadata()["task"] == task
            assert "head.weight" in set(handle.keys())


@pytest.fixture(scope="module")
def held_out() -> BamBatch:
    """Images neither shipped model saw (training used seeds 0 and 1)."""
    return make_bam(240, seed=99)


CHANCE = 1 / 6
# Two standard errors of an accuracy near chance on 240 images, rounded up.
CHANCE_MARGIN = 0.05


def test_object_model_reads_the_object_and_ignores_the_scene(held_out: BamBatch) -> None:
    model = load_bam("object")
    own = accuracy(model, held_out.images, held_out.object_labels)
    # The same objects pasted on other images' scenes. An object's colour is drawn 0.35 away
    # from its own scene's colour, not the new one's: only objects that stay visible (mean colour
    # at least 0.25 from the new scene under the mask in every channel) are scored. Measured: on
    # those the accuracy falls from 1.00 to 0.92-0.97 (rolls 1-3), so the model is not wholly
    # blind to the scene; the claim tested is that it still recognises them.
    new_scene = held_out.scene_only.roll(1, 0)
    moved = torch.where(held_out.masks, held_out.images, new_scene)
    weights = held_out.masks.float()
    area = weights.sum(dim=(1, 2, 3))[:, None]
    gap = ((held_out.images - new_scene) * weights).sum(dim=(2, 3)) / area
    visible = gap.abs().amin(1) >= 0.25
    assert own >= 0.9 and int(visible.sum()) >= 30
    assert accuracy(model, moved[visible], held_out.object_labels[visible]) >= 0.9
    # The scene alone says nothing about the object: chance.
    alone = accuracy(model, held_out.scene_only, held_out.object_labels)
    assert alone <= CHANCE + CHANCE_MARGIN


def test_scene_model_reads_the_scene_and_ignores_the_object(held_out: BamBatch) -> None:
    model = load_bam("scene")
    own = accuracy(model, held_out.images, held_out.scene_labels)
    # Other images' objects pasted on these scenes, and the scenes with no object at all.
    other = torch.where(held_out.masks.roll(1, 0), held_out.images.roll(1, 0), held_out.scene_only)
    assert own >= 0.9
    assert abs(accuracy(model, other, held_out.scene_labels) - own) <= 0.03
    assert abs(accuracy(model, held_out.scene_only, held_out.scene_labels) - own) <= 0.03
    # Its prediction carries no information on the object's class.
    assert accuracy(model, held_out.images, held_out.object_labels) <= CHANCE + CHANCE_MARGIN


def test_insignificant_patch_changes_the_input_but_barely_the_output(held_out: BamBatch) -> None:
    model = load_bam("scene")
    scenes, images, masks = held_out.scene_only[:6], held_out.images[:6], held_out.masks[:6]
    patched, change = insignificant_patch(model, scenes, images, masks, steps=30)
    assert torch.equal(patched[~masks.expand(-1, 3, -1, -1)], scenes[~masks.expand(-1, 3, -1, -1)])
    assert bool(((patched - scenes).abs().amax(dim=(1, 2, 3)) > 0.1).all())
    with torch.no_grad():
        pasted = model(images) - model(scenes)
        before = pasted.norm(dim=1) / model(scenes).norm(dim=1)
    assert bool((change <= before).all())
