"""Figures: overlays (colormap choice, range, mask outline, PNG size) and curve figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

from faithmap.errors import ShapeError
from faithmap.metrics import deletion, insertion
from faithmap.viz import (
    DIVERGING,
    SEQUENTIAL,
    curves_figure,
    display_limits,
    overlay,
    save_overlay,
)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))


def _heatmap_cmap(attribution: torch.Tensor, image: torch.Tensor) -> str:
    figure = overlay(image, attribution)
    return str(figure.axes[1].get_images()[-1].get_cmap().name)


def test_signed_maps_are_diverging_and_centred(image: torch.Tensor) -> None:
    signed = torch.randn(1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert _heatmap_cmap(signed, image) == DIVERGING
    low, high = display_limits(signed)
    assert low == -high and high > 0


def test_non_negative_maps_are_sequential_from_their_minimum(image: torch.Tensor) -> None:
    positive = torch.rand(32, 32) + 1.0
    assert _heatmap_cmap(positive, image) == SEQUENTIAL
    assert display_limits(positive)[0] == float(positive.min())


def test_display_range_ignores_a_few_outliers() -> None:
    values = torch.rand(64, 64)
    values[0, 0] = 1e6
    assert display_limits(values)[1] < 2.0


def test_constant_map_gets_a_valid_range() -> None:
    assert display_limits(torch.zeros(1, 8, 8)) == (0.0, 1.0)


def test_overlay_leaves_its_inputs_unchanged(image: torch.Tensor) -> None:
    attribution = torch.randn(1, 32, 32)
    before = image.clone(), attribution.clone()
    overlay(image, attribution, mask=torch.zeros(1, 32, 32, dtype=torch.bool))
    assert torch.equal(image, before[0]) and torch.equal(attribution, before[1])


def test_mask_is_outlined_on_both_panels(image: torch.Tensor) -> None:
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 8:20, 10:24] = True
    with_mask = overlay(image, torch.rand(1, 32, 32), mask=mask)
    without = overlay(image, torch.rand(1, 32, 32))
    contours = [len(ax.collections) for ax in with_mask.axes[:2]]
    assert contours[0] >= 1 and contours[1] >= 1
    assert [len(ax.collections) for ax in without.axes[:2]] == [0, 0]


def test_save_overlay_writes_a_non_blank_png_of_the_right_size(
    tmp_path: Path, image: torch.Tensor
) -> None:
    path = save_overlay(tmp_path / "sub" / "map.png", image, torch.randn(32, 32), dpi=50)
    pixels = imread(path)
    assert pixels.shape[:2] == (160, 320)  # (3.2, 6.4) inches at 50 dpi
    assert float(pixels[..., :3].var()) > 0.01


def test_overlay_rejects_mismatched_shapes(image: torch.Tensor) -> None:
    with pytest.raises(ShapeError, match="matching the image"):
        overlay(image, torch.rand(1, 16, 16))
    with pytest.raises(ShapeError, match=r"\(C, H, W\)"):
        overlay(image[None], torch.rand(1, 32, 32))


def test_grey_images_are_displayed(image: torch.Tensor) -> None:
    figure = overlay(image[:1], torch.rand(1, 32, 32))
    shown = figure.axes[0].get_images()[0].get_array()
    assert shown is not None and shown.shape == (32, 32)


def test_curves_figure_has_one_panel_per_metric_and_one_line_per_result() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    good, bad = torch.rand(3, 1, 16, 16), -torch.rand(3, 1, 16, 16)
    results = {
        "a": insertion(net, x, good, steps=8),
        "b": insertion(net, x, bad, steps=8),
        "a ": deletion(net, x, good, steps=8),
    }
    figure = curves_figure(results)
    assert [ax.get_title() for ax in figure.axes] == ["insertion", "deletion"]
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 1]
    legend = figure.axes[0].get_legend()
    assert legend is not None
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == [f"a AUC {results['a'].mean:.3f}", f"b AUC {results['b'].mean:.3f}"]
    _, y_data = figure.axes[1].get_lines()[0].get_data()
    torch.testing.assert_close(
        torch.as_tensor(y_data), results["a "].curve.mean(0).double(), check_dtype=False
    )
    assert len(curves_figure(list(results.values())).axes) == 2
