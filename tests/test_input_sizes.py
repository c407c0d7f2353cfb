"""Honest defaults at every input size (issue 14, item 4).

Every registered image method runs on its defaults at 8x8, 48x192 (non-square) and 224x224 and
must return a map that varies within each sample; a constant map warns, naming the method and the
parameter to change; occlusion takes rectangular windows; the metrics whose defaults assumed large
images work at 8x8 and 48x192; the blur fill works on 1-pixel-high images.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import correlate1d
from torch import nn

import faithmap
from faithmap import Model
from faithmap.core.explanation import Explanation
from faithmap.core.method import quiet_constant_maps
from faithmap.core.registry import method_of
from faithmap.core.removal import gaussian_blur
from faithmap.data.synthetic import make_shapes
from faithmap.errors import ConstantMapWarning, InvalidParameterError
from faithmap.methods.scaling import grid_side
from faithmap.metrics import faithfulness_correlation, random_logit
from faithmap.testing import ConstantNet, tiny_vit

SIZES = [(8, 8), (48, 192), (224, 224)]

IMAGE_METHODS = faithmap.METHODS.names()
"""Every registered method: each explains images ``(N, C, H, W)``."""

REGION_METHODS = {"feature_ablation", "hsic", "kernel_shap", "lima", "lime", "smdl", "sobol"}
"""Methods whose map is constant on each region: their maps must hold more than one value."""

BUDGET_CAPS: dict[str, dict[str, Any]] = {
    # Each cap only lowers a cost parameter whose default takes more than a few seconds on two
    # CPU cores at 224x224 (or 48x192); none touches a window, grid, region or size default,
    # which are what this file tests.
    "extremal": {"iterations": 20},  # default 300 forward+backward passes per image
    "rise": {"n_masks": 200},  # default 2000 passes per image
    "lime": {"n_samples": 200},  # default 1000 passes per image
    "kernel_shap": {"n_samples": 200},  # default 1000 passes per image
    "sobol": {"n_design": 8},  # default 32 x (64 + 2) passes per image
    "hsic": {"n_design": 128},  # default 500 passes per image
    "smoothgrad": {"n_samples": 10},  # default 50 backward passes per image
    "smdl": {"search": "stochastic"},  # exhaustive greedy: ~2000 passes (25 s) at 224x224
    "lima": {"search": "stochastic"},  # bidirectional search: ~1400 passes at 224x224
    "vps": {"search": "stochastic"},  # exhaustive greedy over 64 regions: ~4150 passes
    "d_rise": {"n_masks": 200},  # default 5000 passes per image
}


class SmallCNN(nn.Module):
    """Two small convolutions (the first strided), global average pooling and a linear head:
    cheap at 224x224."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(6, 3)
        with torch.no_grad():  # no bias: the predicted class's logit is its positive evidence
            self.head.bias.zero_()  # in the features, so Grad-CAM's ReLU keeps part of the map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return out


def small_model() -> Model:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallCNN().eval()
    return Model(net, batch_size=32)


def attention_model() -> Model:
    """The battery's tiny vision transformer (4 x 4 patches), for methods that read attention."""
    return Model(tiny_vit(), batch_size=32)


def shape_images(height: int, width: int, n: int = 1) -> torch.Tensor:
    """Synthetic shapes on a textured background, resized to ``height x width`` (not square)."""
    images = make_shapes(n, seed=3, size=max(32, height, width)).images
    return F.interpolate(images, size=(height, width), mode="area")


def sample_spread(attributions: torch.Tensor) -> list[float]:
    """Per sample: largest minus smallest attribution."""
    flat = attributions.flatten(1)
    return (flat.amax(1) - flat.amin(1)).tolist()


@pytest.mark.parametrize(("height", "width"), SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_default_map_varies_at_every_size(name: str, height: int, width: int) -> None:
    x = shape_images(height, width)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantMapWarning)
        model = attention_model() if faithmap.METHODS[name].needs_attention else small_model()
        result = faithmap.explain(model, x, method=name, **BUDGET_CAPS.get(name, {}))
    assert result.attributions.shape[-2:] == (height, width)
    maps = result.attributions.reshape(x.shape[0], -1)
    assert all(spread > 0 for spread in sample_spread(result.attributions)), (
        f"{name} gives a constant map at {height}x{width}: spreads "
        f"{sample_spread(result.attributions)}"
    )
    if name in REGION_METHODS or name == "occlusion":
        for i in range(x.shape[0]):
            distinct = torch.unique(maps[i]).numel()
            assert distinct > 1, f"{name} map of sample {i} holds {distinct} value"


@pytest.mark.parametrize(("height", "width"), SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_scaled_defaults_are_recorded(height: int, width: int) -> None:
    x = shape_images(height, width)
    side = grid_side(height, width)
    assert side == {8: 1, 48: 12, 224: 28}[height]
    model = small_model()
    occlusion = faithmap.explain(model, x, method="occlusion")
    assert occlusion.config["window"] == side
    assert occlusion.config["stride"] == max(1, side // 2)
    for name in ("sobol", "hsic"):
        result = faithmap.explain(model, x, method=name, **BUDGET_CAPS[name])
        assert result.config["regions"] == f"patches:{side}"
        assert result.params["regions"] is None  # re-explaining rescales to the new inputs
        assert torch.unique(result.attributions[0]).numel() > 1
    extremal = faithmap.explain(model, x, method="extremal", iterations=2)
    assert extremal.config["grid"] == min(8, side)


def test_a_constant_map_warns_with_the_method_and_the_parameter() -> None:
    x = shape_images(8, 8, n=2)
    ignores_input = Model(ConstantNet(), batch_size=16)
    with pytest.warns(
        ConstantMapWarning, match=r"occlusion returned an all-zero map for 2 of 2.*'window'"
    ):
        faithmap.explain(ignores_input, x, method="occlusion")
    with pytest.warns(ConstantMapWarning, match=r"sobol returned .*regions="):
        faithmap.explain(ignores_input, x, method="sobol", n_design=4)
    with pytest.warns(ConstantMapWarning, match=r"saliency returned an all-zero map"):
        faithmap.explain(ignores_input, x, method="saliency")


def test_a_window_as_large_as_the_image_warns_and_names_the_window() -> None:
    x = shape_images(8, 8)
    with pytest.warns(ConstantMapWarning, match=r"Use a smaller 'window' \(now 8"):
        faithmap.explain(small_model(), x, method="occlusion", window=8)


def test_quiet_constant_maps_silences_only_its_block() -> None:
    x = shape_images(8, 8)
    ignores_input = Model(ConstantNet(), batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantMapWarning)
        with quiet_constant_maps():
            faithmap.explain(ignores_input, x, method="saliency")
    with pytest.warns(ConstantMapWarning):
        faithmap.explain(ignores_input, x, method="saliency")


class SumModel(nn.Module):
    """Output 0 is the sum of all inputs; output 1 its negative."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1, keepdim=True)
        return torch.cat([total, -total], dim=1)


@pytest.mark.parametrize(
    ("window", "stride"),
    [((2, 3), (1, 2)), ((3, 1), (2, 1)), ((1, 4), (1, 3))],
)
def test_rectangular_occlusion_of_a_sum_model_is_the_mean_window_sum(
    window: tuple[int, int], stride: tuple[int, int] | int
) -> None:
    height, width = 5, 8
    x = torch.rand(2, 3, height, width, dtype=torch.float64)
    result = faithmap.explain(
        SumModel(), x, method="occlusion", target=0, window=window, stride=stride
    )
    (wh, ww), (sh, sw) = window, (stride, stride) if isinstance(stride, int) else stride
    # Windows start every stride until one reaches the border (the last one may be cut by it).
    tops = range(0, max(height - wh, 0) + sh, sh)
    lefts = range(0, max(width - ww, 0) + sw, sw)
    expected = torch.zeros(2, height, width, dtype=torch.float64)
    covered = torch.zeros(height, width, dtype=torch.float64)
    for top, left in itertools.product(tops, lefts):
        rows, cols = slice(top, top + wh), slice(left, left + ww)
        expected[:, rows, cols] += x[:, :, rows, cols].sum(dim=(1, 2, 3))[:, None, None]
        covered[rows, cols] += 1
    torch.testing.assert_close(result.attributions[:, 0], expected / covered)
    assert result.config["window"] == window


def test_a_square_pair_is_the_int_window() -> None:
    x = torch.rand(1, 3, 9, 9, dtype=torch.float64)
    as_int = faithmap.explain(SumModel(), x, method="occlusion", target=0, window=3, stride=2)
    as_pair = faithmap.explain(
        SumModel(), x, method="occlusion", target=0, window=(3, 3), stride=(2, 2)
    )
    torch.testing.assert_close(as_int.attributions, as_pair.attributions, rtol=0, atol=0)
    assert as_pair.config["window"] == 3 and as_pair.config["stride"] == 2


def test_a_saved_rectangular_window_explains_again(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 6, 9, dtype=torch.float64)
    first = faithmap.explain(SumModel(), x, method="occlusion", target=0, window=(2, 3))
    first.save(tmp_path / "occlusion.safetensors")
    loaded = Explanation.load(tmp_path / "occlusion.safetensors")
    again = method_of(loaded, None, "test").explain(SumModel(), x, target=0)
    torch.testing.assert_close(again.attributions, first.attributions, rtol=0, atol=0)


def test_a_window_larger_than_the_image_names_a_window_that_fits() -> None:
    x = torch.rand(1, 3, 1, 48)
    with pytest.raises(InvalidParameterError, match=r"'window' .*window=\(1, 4\)"):
        faithmap.explain(SumModel(), x, method="occlusion", target=0, window=4)
    with pytest.raises(InvalidParameterError, match=r"'window' parameter of Occlusion"):
        faithmap.get_method("occlusion", window=(2, 0))


@pytest.mark.parametrize(("height", "width"), SIZES[:2], ids=["8x8", "48x192"])
def test_metrics_that_assumed_large_images_work_on_their_defaults(height: int, width: int) -> None:
    x = shape_images(height, width, n=2)
    model = small_model()
    explanation = faithmap.explain(model, x, method="saliency")
    correlation = faithfulness_correlation(model, x, explanation)
    assert correlation.choices["subset_size"] == min(224, height * width // 5)
    assert bool(torch.isfinite(correlation.values).all())
    logit = random_logit(model, x, explanation)
    assert logit.choices["similarity"] == ("spearman" if height < 11 else "ssim")
    assert bool(torch.isfinite(logit.values).all())


def test_faithfulness_correlation_refuses_images_of_one_unit() -> None:
    x = shape_images(8, 8)
    model = small_model()
    explanation = faithmap.explain(model, x, method="saliency")
    with pytest.raises(InvalidParameterError, match=r"at least 2 units.*finer 'unit'"):
        faithfulness_correlation(model, x, explanation, unit="patches:8")


def _mirror_blur(images: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """scipy.ndimage's mirror-mode correlation with the same 1-D Gaussian, axis by axis."""
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    array = images.numpy()
    for axis in (2, 3):
        if array.shape[axis] > 1:  # a one-pixel axis is constant along itself
            array = correlate1d(array, kernel, axis=axis, mode="mirror")
    return torch.from_numpy(array)


@pytest.mark.parametrize("shape", [(2, 3, 1, 48), (1, 3, 3, 3), (1, 1, 5, 2), (1, 3, 16, 16)])
def test_blur_works_on_images_smaller_than_its_kernel(shape: tuple[int, ...]) -> None:
    images = torch.rand(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gaussian_blur(images, 11, 5.0), _mirror_blur(images, 11, 5.0))


def test_blur_fill_metric_runs_on_one_pixel_high_inputs() -> None:
    x = torch.rand(2, 3, 1, 48, generator=torch.Generator().manual_seed(0))
    model = small_model()
    explanation = faithmap.explain(model, x, method="saliency")
    result = faithmap.metrics.insertion(model, x, explanation, fill="blur", steps=4)
    assert bool(torch.isfinite(result.values).all())
