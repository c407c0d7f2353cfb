"""Regions (pixels, patches, real SLIC superpixels) and removal fills."""

from __future__ import annotations

import pytest
import torch

from faithmap import InvalidParameterError, Removal, ShapeError, make_regions
from faithmap.core.regions import patch_grid, pixels, slic
from faithmap.core.removal import blend, gaussian_blur, make_removal


def test_pixels_and_patches() -> None:
    x = torch.zeros(2, 3, 6, 10)
    assert pixels(x).count == 60
    grid = patch_grid(x, 4)
    assert grid.count == 2 * 3
    assert grid.labels[0, 5, 9] == 5 and grid.labels[1, 0, 0] == 0 and grid.labels[0, 3, 4] == 1
    assert torch.equal(grid.sizes()[0], torch.tensor([16.0, 16, 8, 8, 8, 4]))


def test_to_pixels_is_one_gather_per_row() -> None:
    regions = patch_grid(torch.zeros(2, 1, 4, 4), 2)
    keep = torch.tensor([[1.0, 0, 0, 1], [0, 1, 1, 0], [1, 1, 1, 1]])
    masks = regions.to_pixels(keep, torch.tensor([0, 1, 0]))
    assert masks.shape == (3, 1, 4, 4)
    assert masks[0, 0, :2, :2].eq(1).all() and masks[0, 0, :2, 2:].eq(0).all()
    assert masks[1, 0, 2:, :2].eq(1).all() and masks[2].eq(1).all()


def test_pool_and_paint_round_trip() -> None:
    regions = patch_grid(torch.zeros(1, 1, 4, 4), 2)
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    painted = regions.paint(values)
    torch.testing.assert_close(regions.pool(painted), values)


def test_slic_on_a_real_photo() -> None:
    from skimage import data
    from skimage.transform import resize

    astronaut = data.astronaut()  # type: ignore[no-untyped-call]
    photo = resize(astronaut, (64, 64), anti_aliasing=True)  # type: ignore[no-untyped-call]
    x = torch.from_numpy(photo).permute(2, 0, 1).float().unsqueeze(0)
    regions = slic(x, 25)
    found = torch.unique(regions.labels)
    assert torch.equal(found, torch.arange(regions.count))
    assert 10 <= regions.count <= 40
    assert regions.kind == "slic:25"
    # superpixels follow colour: their pixels vary less than those of square patches
    grid = patch_grid(x, 16)
    assert within_region_spread(x, regions.labels) < 0.8 * within_region_spread(x, grid.labels)


def within_region_spread(x: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over regions of the per-channel standard deviation of their pixels."""
    flat, ids = x[0].flatten(1), labels[0].flatten()
    spreads = [flat[:, ids == r].std(1).mean() for r in torch.unique(ids) if (ids == r).sum() > 1]
    return float(torch.stack(spreads).mean())


def test_make_regions_specs() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert make_regions("pixels", x).count == 256
    assert make_regions("patches:4", x).count == 16
    assert make_regions("slic:9", x).kind == "slic:9"
    labels = torch.zeros(16, 16, dtype=torch.long)
    labels[8:] = 7
    assert make_regions(labels, x).count == 2
    with pytest.raises(InvalidParameterError, match="'regions' parameter"):
        make_regions("hexagons", x)
    with pytest.raises(ShapeError, match=r"label map must have shape \(2, 16, 16\)"):
        make_regions(torch.zeros(2, 8, 8, dtype=torch.long), x)


def test_fills() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert Removal(fill="constant", value=0.5).substrate(x).eq(0.5).all()
    torch.testing.assert_close(
        Removal(fill="mean").substrate(x).mean(dim=(2, 3)), x.mean(dim=(2, 3))
    )
    noise = Removal(fill="noise", seed=3).substrate(x)
    assert torch.equal(noise, Removal(fill="noise", seed=3).substrate(x))
    assert not torch.equal(noise, Removal(fill="noise", seed=4).substrate(x))
    torch.testing.assert_close(noise.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05, rtol=0)
    assert make_removal(0.25).substrate(x).eq(0.25).all()
    assert make_removal("blur").describe() == "blur(11,5)"


def test_blur_keeps_constant_images_and_smooths() -> None:
    flat = torch.full((1, 3, 16, 16), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 11, 5.0), flat)
    x = torch.rand(1, 3, 16, 16)
    assert gaussian_blur(x, 5, 2.0).std() < x.std() / 2
    # A kernel wider than the image reflects again at the far edge (scipy's "mirror"): the blur
    # of a 4x4 image keeps its mean and still smooths (tests/test_input_sizes.py checks values).
    small = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    blurred = gaussian_blur(small, 11, 5.0)
    assert blurred.shape == small.shape and blurred.std() < small.std() / 2


def test_blend_is_exact() -> None:
    x, s = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    keep = (torch.rand(2, 1, 4, 4) > 0.5).float()
    torch.testing.assert_close(blend(x, s, keep), x * keep + s * (1 - keep))


def test_callable_fill_must_keep_the_shape() -> None:
    with pytest.raises(ShapeError, match="callable fill must return"):
        Removal(fill=lambda x: x[:, :1]).substrate(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize("fill", ["mean", "noise", "blur"])
def test_image_fills_refuse_tabular_rows(fill: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"needs inputs \(N, C, \.\.\.\).*lambda x"):
        Removal(fill=fill).substrate(torch.rand(4, 6))
