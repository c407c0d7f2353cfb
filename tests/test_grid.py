"""Grid data, the GridPG/DiFull/DiPart settings, the grid pointing game and AggAtt (Rao et al.)."""

from __future__ import annotations

from functools import cache

import pytest
import torch
from torch import Tensor

import faithmap
from faithmap.data import GridBatch, cell_masks, make_grid, make_shapes
from faithmap.errors import ConstantMapWarning, InvalidParameterError, ShapeError
from faithmap.metrics import aggatt, grid_pointing_game
from faithmap.zoo import SmallCNN, load_builtin
from faithmap.zoo.architectures import normalise
from faithmap.zoo.grid_models import GridModel, corner_cells, layer_attributions


@cache
def _base() -> SmallCNN:
    model = load_builtin("cnn")
    assert isinstance(model, SmallCNN)
    return model


@cache
def _grids() -> GridBatch:
    return make_grid(faithmap.Model(_base(), batch_size=64), 3, seed=1, pool=120)


def _cell(grids: Tensor, cell: int, side: int = 64) -> Tensor:
    row, col = divmod(cell, 2)
    return grids[:, :, row * side : (row + 1) * side, col * side : (col + 1) * side]


# --- grid data ------------------------------------------------------------------------------


def test_cell_masks_are_the_quadrants() -> None:
    masks = cell_masks(2, 3)
    assert masks.shape == (4, 1, 6, 6)
    assert masks.sum(dim=(1, 2, 3)).tolist() == [9, 9, 9, 9]
    assert bool(masks[1, 0, :3, 3:].all()) and not bool(masks[1, 0, 3:].any())
    assert bool(masks.sum(0).eq(1).all())  # a partition of the grid


def test_make_grid_tiles_distinct_confident_classes() -> None:
    grids = _grids()
    assert grids.images.shape == (3, 3, 128, 128)
    assert grids.labels.shape == (3, 4)
    for row in grids.labels.tolist():
        assert len(set(row)) == 4
    pool = make_shapes(120, seed=1)
    for cell in range(4):
        # Each cell holds, pixel for pixel, the pool image it names, of the labelled class.
        source = grids.sources[:, cell]
        assert torch.equal(_cell(grids.images, cell), pool.images[source])
        assert torch.equal(pool.labels[source], grids.labels[:, cell])
        probabilities = _base()(pool.images[source]).softmax(1)
        assert bool((probabilities.argmax(1) == grids.labels[:, cell]).all())
        assert bool((probabilities.max(1).values >= 0.99).all())
        assert bool((grids.object_masks[:, cell] <= grids.cells[cell, 0]).all())
    assert torch.equal(grids.masks(2)[1, 0], grids.cells[2, 0])


def test_make_grid_is_seeded() -> None:
    again = make_grid(faithmap.Model(_base(), batch_size=64), 3, seed=1, pool=120)
    assert torch.equal(again.images, _grids().images)


def test_make_grid_refuses_more_cells_than_classes() -> None:
    with pytest.raises(InvalidParameterError, match="more than the 6 classes"):
        make_grid(_base(), 1, scale=3)
    with pytest.raises(InvalidParameterError, match="conf_threshold"):
        make_grid(_base(), 1, conf_threshold=1.0, pool=12)


# --- the three settings -----------------------------------------------------------------------


def test_difull_cell_outputs_equal_the_model_on_each_cell() -> None:
    grids = _grids().images
    out = GridModel(_base(), "difull")(grids)
    assert out.shape == (3, 24)
    for cell in range(4):
        expected = _base()(_cell(grids, cell))
        torch.testing.assert_close(out[:, cell * 6 : cell * 6 + 6], expected, rtol=1e-5, atol=1e-5)


def test_dipart_pools_each_cell_of_one_shared_feature_map() -> None:
    base, grids = _base(), _grids().images
    out = GridModel(base, "dipart")(grids)
    features = base.features(base.block2(base.block1(normalise(grids))))  # (3, 64, 32, 32)
    assert features.shape[-1] == 32
    for cell in range(4):
        pooled = _cell(features, cell, side=16).mean(dim=(2, 3))
        expected = base.head(pooled)
        torch.testing.assert_close(out[:, cell * 6 : cell * 6 + 6], expected, rtol=1e-5, atol=1e-5)


def test_gridpg_is_the_model_on_the_whole_grid() -> None:
    grids = _grids().images
    torch.testing.assert_close(GridModel(_base(), "gridpg")(grids), _base()(grids))


def test_targets_and_corners() -> None:
    assert GridModel(_base(), "difull").target(2, 5) == 17
    assert GridModel(_base(), "gridpg").target(2, 5) == 5
    assert corner_cells(2) == [0, 1, 2, 3]
    assert corner_cells(3) == [0, 2, 6, 8]


def test_grid_model_refuses_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="setting"):
        GridModel(_base(), "full")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="multiples of 2"):
        GridModel(_base(), "difull")(torch.rand(1, 3, 65, 64))


@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_difull_gradients_are_exactly_zero_outside_the_cell(method: str) -> None:
    grids = _grids()
    model = GridModel(_base(), "difull")
    for cell in range(4):
        target = model.target(cell, grids.labels[:, cell])
        params = {"steps": 8} if method == "integrated_gradients" else {}
        wrapped = faithmap.Model(model, batch_size=16)
        explanation = faithmap.explain(
            wrapped, grids.images, method=method, target=target, **params
        )
        maps = explanation.attributions
        outside = ~grids.cells[cell, 0]
        assert bool((maps[:, :, outside] == 0).all())
        assert bool((maps[:, :, grids.cells[cell, 0]] != 0).any())
        values = grid_pointing_game(maps, grids.masks(cell)).values
        assert values.tolist() == [1.0, 1.0, 1.0]


def test_difull_layer_attributions_stay_in_the_cell() -> None:
    grids = _grids()
    model = GridModel(_base(), "difull")
    target = model.target(1, grids.labels[:, 1])
    maps = layer_attributions(
        model, grids.images, method="input_x_gradient", layer="block2", target=target, batch_size=16
    )
    assert maps.shape == (3, 1, 128, 128)
    # Cell 1 is rows 0-15, columns 16-31 of the 32 x 32 map. Bilinear upsampling by 4
    # (align_corners=False) reads map row 15 up to image row 65 and map column 16 from image
    # column 62: beyond those, exactly zero.
    assert bool((maps[:, 0, 66:, :] == 0).all()) and bool((maps[:, 0, :, :62] == 0).all())
    assert bool((maps[:, 0, :64, 64:] != 0).any())


def test_layer_attributions_are_the_gradient_at_the_layer() -> None:
    """At the final layer with global pooling, the gradient is the same at every position."""
    grids = _grids()
    model = GridModel(_base(), "gridpg")
    with pytest.warns(ConstantMapWarning):
        maps = layer_attributions(
            model,
            grids.images,
            method="saliency",
            layer="features",
            target=grids.labels[:, 0],
            batch_size=16,
        )
    weights = _base().head.weight.detach()[grids.labels[:, 0]].abs().amax(1) / 32**2
    torch.testing.assert_close(maps[:, 0], weights[:, None, None].expand(-1, 128, 128))


# --- grid pointing game -----------------------------------------------------------------------


def test_grid_pointing_game_perfect_uniform_and_empty_maps() -> None:
    for scale in (2, 3):
        cells = cell_masks(scale, 4)
        perfect = cells[:1].float()
        assert grid_pointing_game(perfect, cells[:1]).values.tolist() == [1.0]
        uniform = torch.ones(1, 1, 4 * scale, 4 * scale)
        assert grid_pointing_game(uniform, cells[:1]).values.item() == pytest.approx(1 / scale**2)
    cells = cell_masks(2, 4)
    assert grid_pointing_game(torch.zeros(1, 1, 8, 8), cells[:1]).values.tolist() == [0.0]
    negative = -torch.ones(1, 1, 8, 8)
    negative[0, 0, 0, 0] = 1.0  # negatives are clamped: only this pixel counts
    assert grid_pointing_game(negative, cells[:1]).values.tolist() == [1.0]


def test_grid_pointing_game_upsamples_a_coarse_map_bilinearly() -> None:
    # [[1, 0], [0, 0]] upsampled to 4 x 4 (align_corners=False) is the outer product of
    # (1, 0.75, 0.25, 0) with itself: total 2 * 2 = 4, top-left cell 1.75 * 1.75 = 3.0625.
    coarse = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    value = grid_pointing_game(coarse, cell_masks(2, 2)[:1]).values.item()
    assert value == pytest.approx(3.0625 / 4)


def test_grid_pointing_game_batch_invariance() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 3, 8, 8, generator=gen)
    masks = cell_masks(2, 4)[torch.tensor([0, 1, 2, 3, 0])]
    whole = grid_pointing_game(maps, masks).values
    single = torch.cat(
        [grid_pointing_game(maps[i : i + 1], masks[i : i + 1]).values for i in range(5)]
    )
    torch.testing.assert_close(whole, single)


def test_grid_pointing_game_refuses_bad_masks() -> None:
    with pytest.raises(ShapeError, match="cell masks"):
        grid_pointing_game(torch.ones(2, 1, 8, 8), cell_masks(2, 4)[:1])


# --- AggAtt ---------------------------------------------------------------------------------


def test_aggatt_bins_sorted_maps() -> None:
    cells = cell_masks(2, 2)
    n = 50
    maps = torch.zeros(n, 1, 4, 4)
    # Map k puts mass k in the explained (top-left) cell and 49 - k in the top-right cell: its
    # score is k / 49, so the best map is k = 49.
    for k in range(n):
        maps[k, 0, 0, 0] = float(k)
        maps[k, 0, 0, 3] = float(n - 1 - k)
    result = aggatt(maps, cells[:1].expand(n, -1, -1, -1))
    # Bins at round(edge * 50): 0, 1, 2, 25, 48, 49, 50.
    assert result.counts.tolist() == [1, 1, 23, 23, 1, 1]
    assert result.maps.shape == (6, 4, 4)
    assert result.maps[0, 0, 0].item() == 49.0 and result.maps[0, 0, 3].item() == 0.0
    assert result.maps[-1, 0, 0].item() == 0.0 and result.maps[-1, 0, 3].item() == 49.0
    middle = torch.arange(2, 25, dtype=torch.float32)  # maps ranked 3rd to 25th: k = 47 .. 25
    assert result.maps[2, 0, 0].item() == pytest.approx(float((49 - middle).mean()))
    assert result.scores[0].item() == pytest.approx(1.0)
    expected = torch.quantile(result.maps.flatten().double(), 0.995).item()
    assert result.vmax == pytest.approx(expected)


def test_aggatt_refuses_too_few_maps() -> None:
    with pytest.raises(InvalidParameterError, match="too few"):
        aggatt(torch.ones(10, 1, 4, 4), cell_masks(2, 2)[:1].expand(10, -1, -1, -1))
