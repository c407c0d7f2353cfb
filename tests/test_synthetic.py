"""Tests of the synthetic shapes data set and its ground-truth masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import label

from faithmap.data import CLASS_NAMES, ShapesBatch, make_shapes
from faithmap.errors import InvalidParameterError


@pytest.fixture(scope="module")
def batch() -> ShapesBatch:
    return make_shapes(300, seed=7)


@pytest.mark.parametrize("size", [32, 64, 97])
def test_shapes_dtypes_and_ranges(size: int) -> None:
    b = make_shapes(13, seed=1, size=size)
    assert len(b) == 13
    assert b.images.shape == (13, 3, size, size)
    assert b.images.dtype == torch.float32
    assert b.labels.shape == (13,)
    assert b.labels.dtype == torch.int64
    assert b.masks.shape == (13, 1, size, size)
    assert b.masks.dtype == torch.bool
    assert float(b.images.min()) >= 0.0
    assert float(b.images.max()) <= 1.0
    assert int(b.labels.min()) >= 0
    assert int(b.labels.max()) < len(CLASS_NAMES)
    assert b.class_names == CLASS_NAMES


def test_single_image() -> None:
    b = make_shapes(1, seed=0, size=32)
    assert len(b) == 1
    assert bool(b.masks.any())


def test_same_seed_same_data() -> None:
    torch.manual_seed(123)
    a = make_shapes(40, seed=5)
    torch.manual_seed(456)  # the global random state must not matter
    b = make_shapes(40, seed=5)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)


def test_global_random_state_untouched() -> None:
    state = torch.get_rng_state()
    make_shapes(10, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_different_seeds_differ() -> None:
    a, b = make_shapes(40, seed=0), make_shapes(40, seed=1)
    assert not torch.equal(a.labels, b.labels)
    assert not torch.equal(a.masks, b.masks)
    # Every image differs, not just a few.
    assert bool((a.images - b.images).abs().flatten(1).amax(1).gt(0.2).all())


@pytest.mark.parametrize("n", [1, 6, 100, 601])
def test_classes_balanced(n: int) -> None:
    counts = torch.bincount(make_shapes(n, seed=2, size=32).labels, minlength=len(CLASS_NAMES))
    assert int(counts.sum()) == n
    assert int(counts.max() - counts.min()) <= 1


def test_mask_is_exactly_the_object(batch: ShapesBatch) -> None:
    # In every channel, object pixels and background pixels occupy disjoint value ranges
    # separated by a gap: the mask is the set of pixels that look like the object.
    mask = batch.masks.expand_as(batch.images)
    inf = torch.tensor(float("inf"))
    inside_max = torch.where(mask, batch.images, -inf).amax((2, 3))
    inside_min = torch.where(mask, batch.images, inf).amin((2, 3))
    outside_max = torch.where(~mask, batch.images, -inf).amax((2, 3))
    outside_min = torch.where(~mask, batch.images, inf).amin((2, 3))
    gap = torch.maximum(
        outside_min - inside_max,  # object darker than all of the background
        inside_min - outside_max,  # object brighter than all of the background
    )
    assert float(gap.min()) >= 0.1
    # The object is nearly uniform: pixel noise only.
    assert float((inside_max - inside_min).max()) <= 0.08 + 1e-6


def test_masks_have_the_class_topology(batch: ShapesBatch) -> None:
    # Connected components of the object, and of the background (a ring's hole is a second one).
    expected = {
        "disc": (1, 1),
        "square": (1, 1),
        "triangle": (1, 1),
        "cross": (1, 1),
        "ring": (1, 2),
        "stripes": (3, 1),
    }
    for mask, y in zip(batch.masks[:, 0].numpy(), batch.labels.tolist(), strict=True):
        objects = int(label(mask, connectivity=1).max())  # type: ignore[no-untyped-call]
        background = int(label(~mask, connectivity=1).max())  # type: ignore[no-untyped-call]
        assert (objects, background) == expected[CLASS_NAMES[y]]


def test_objects_vary_in_position_and_scale(batch: ShapesBatch) -> None:
    masks = batch.masks[:, 0].float()
    area = masks.sum((1, 2))
    assert float(area.min()) > 0
    assert float(area.max() / area.min()) > 3
    coords = torch.arange(64, dtype=torch.float32)
    centre_x = (masks.sum(1) * coords).sum(1) / area
    centre_y = (masks.sum(2) * coords).sum(1) / area
    assert float(centre_x.std()) > 8
    assert float(centre_y.std()) > 8


def test_colour_does_not_identify_the_class(batch: ShapesBatch) -> None:
    # Mean object colour is about the same (0.5 per channel) for every class.
    for k in range(len(CLASS_NAMES)):
        of_class = batch.labels == k
        images, masks = batch.images[of_class], batch.masks[of_class]
        colour = (images * masks).sum((2, 3)) / masks.sum((2, 3))
        assert np.allclose(colour.mean(0).numpy(), 0.5, atol=0.12)


def test_scales_with_size() -> None:
    small, large = make_shapes(60, seed=4, size=32), make_shapes(60, seed=4, size=128)
    ratio = large.masks.float().mean() / small.masks.float().mean()
    # The object covers about the same fraction of the image at every size.
    assert 0.8 < float(ratio) < 1.25


def test_error_message_form() -> None:
    with pytest.raises(
        InvalidParameterError,
        match=r"^The 'n' parameter of make_shapes must be an int >= 1\. Got 0 instead\.$",
    ):
        make_shapes(0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": -3}, "n"),
        ({"n": 2.0}, "n"),
        ({"n": True}, "n"),
        ({"n": "8"}, "n"),
        ({"n": 4, "size": 31}, "size"),
        ({"n": 4, "size": 64.0}, "size"),
        ({"n": 4, "seed": -1}, "seed"),
        ({"n": 4, "seed": None}, "seed"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of make_shapes"):
        make_shapes(**kwargs)  # type: ignore[arg-type]
