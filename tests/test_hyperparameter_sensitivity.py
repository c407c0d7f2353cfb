"""SAM sensitivity: map spread on hand-made maps, SSIM against scikit-image, and the sweep."""

from __future__ import annotations

import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from faithmap.api import explain
from faithmap.bench.sensitivity import DEFAULT_GRIDS, default_grid, sensitivity_sweep
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics.hyperparameter_sensitivity import map_spread


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def images(n: int = 2, side: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1))


def test_known_rank_correlations_pairwise_and_to_default() -> None:
    # Ranks x = 1..5, y = (2, 1, 4, 3, 5), z = 5..1: rho(x, y) = 1 - 6 * 4 / 120 = 0.8,
    # rho(x, z) = -1, rho(y, z) = 1 - 6 * 36 / 120 = -0.8.
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]).view(1, 1, 1, 5)
    y = torch.tensor([[2.0, 1.0, 4.0, 3.0, 5.0]]).view(1, 1, 1, 5)
    z = x.flip(-1)
    spread = map_spread([x, y, z], similarities=("spearman",))
    assert spread.mean("spearman") == pytest.approx((0.8 - 1.0 - 0.8) / 3)
    assert spread.mean("spearman", of="to_default") == pytest.approx((0.8 - 1.0) / 2)
    assert spread.settings == 3 and "ssim" not in spread.pairwise


def test_ssim_of_signed_maps_matches_scikit_image() -> None:
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(3, 1, 20, 17, generator=generator)
    b = a + 0.5 * torch.randn(3, 1, 20, 17, generator=generator)
    spread = map_spread([a, b], similarities=("ssim",))
    expected = [
        structural_similarity(  # type: ignore[no-untyped-call]
            (x / x.abs().max()).numpy(),
            (y / y.abs().max()).numpy(),
            gaussian_weights=True,
            sigma=1.5,
            data_range=2.0,
        )
        for x, y in zip(a[:, 0].double(), b[:, 0].double(), strict=True)
    ]
    torch.testing.assert_close(spread.pairwise["ssim"], torch.tensor(expected, dtype=torch.float64))


def test_ssim_of_absolute_maps_matches_scikit_image() -> None:
    generator = torch.Generator().manual_seed(5)
    a = torch.randn(2, 16, 16, generator=generator)
    b = a + torch.randn(2, 16, 16, generator=generator)
    spread = map_spread([a, b], absolute=True)
    expected = [
        structural_similarity(  # type: ignore[no-untyped-call]
            (x.abs() / x.abs().max()).numpy(),
            (y.abs() / y.abs().max()).numpy(),
            gaussian_weights=True,
            sigma=1.5,
            data_range=1.0,
        )
        for x, y in zip(a.double(), b.double(), strict=True)
    ]
    torch.testing.assert_close(
        spread.to_default["ssim"], torch.tensor(expected, dtype=torch.float64)
    )


def test_a_deterministic_method_repeated_has_correlation_and_ssim_one() -> None:
    net, x = tiny_net(), images()
    maps = [explain(net, x, method="saliency") for _ in range(3)]
    spread = map_spread(maps)
    torch.testing.assert_close(spread.pairwise["spearman"], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(spread.pairwise["ssim"], torch.ones(2, dtype=torch.float64))


def test_sweep_over_identical_settings_scores_one() -> None:
    # Occlusion's default window on 16 x 16 is max(1, round(16 / 8)) = 2: the same setting.
    sweeps = sensitivity_sweep(tiny_net(), images(), "occlusion", grid={"window": [2]})
    assert [s.parameter for s in sweeps] == ["window"]
    assert sweeps[0].values == (None, 2)
    assert sweeps[0].spread.mean("spearman") == pytest.approx(1.0)
    assert sweeps[0].spread.mean("ssim") == pytest.approx(1.0)


def test_sweep_varies_one_parameter_at_a_time_then_the_seed() -> None:
    sweeps = sensitivity_sweep(
        tiny_net(),
        images(),
        "rise",
        grid={"grid": [2, 4]},
        seeds=[0, 1],
        params={"n_masks": 64},
        similarities=("spearman",),
    )
    assert [(s.parameter, s.values) for s in sweeps] == [("grid", (8, 2, 4)), ("seed", (0, 1))]
    # Different masks under another seed: the maps differ, but not into anti-correlation.
    seed_spread = sweeps[1].spread.mean("spearman")
    assert -1.0 < seed_spread < 1.0
    assert sweeps[1].spread.labels == ("seed=0", "seed=1")


def test_methods_without_a_seed_get_no_seed_sweep() -> None:
    sweeps = sensitivity_sweep(
        tiny_net(), images(), "integrated_gradients", grid={"steps": [4]}, seeds=[0, 1]
    )
    assert [s.parameter for s in sweeps] == ["steps"]


def test_default_grids_name_real_parameters_and_resolve_cam_layers() -> None:
    net = tiny_net()
    assert default_grid("grad_cam", net) == {"layer": ("0", "2")}
    for method, grid in DEFAULT_GRIDS.items():
        if method != "grad_cam":
            assert default_grid(method, net) == dict(grid)


def test_sweep_and_spread_refuse_bad_input() -> None:
    net, x = tiny_net(), images()
    with pytest.raises(InvalidParameterError, match="no default hyperparameter grid"):
        sensitivity_sweep(net, x, "saliency")
    with pytest.raises(InvalidParameterError, match="not one of its hyperparameters"):
        sensitivity_sweep(net, x, "integrated_gradients", grid={"window": [3]})
    with pytest.raises(InvalidParameterError, match="seeds go in"):
        sensitivity_sweep(net, x, "rise", grid={"seed": [3]})
    with pytest.raises(InvalidParameterError, match="at least 2"):
        map_spread([x])
    with pytest.raises(ShapeError, match="same shape"):
        map_spread([x, x[:1]])
    with pytest.raises(ShapeError, match="11 x 11"):
        map_spread([x[..., :8, :8], x[..., :8, :8]])
    with pytest.raises(InvalidParameterError, match="similarities"):
        map_spread([x, x], similarities=("hog",))
