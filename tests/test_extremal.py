"""Extremal perturbations: the mask finds the region the model reads, at the requested area."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import faithmap
from faithmap.methods.extremal import area_reference

INSIDE = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
INSIDE[..., 4:10, 8:14] = True  # 36 pixels, 14% of the image


class ReadsOneRegion(nn.Module):
    """Class 0's logit grows with how much of the region's signal is present."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = (x * INSIDE).flatten(1).sum(1) / (3 * INSIDE.sum())
        return torch.stack([20.0 * (kept - 0.5), torch.zeros_like(kept)], dim=1)


def test_area_reference() -> None:
    reference = area_reference(10, 0.3, device=torch.device("cpu"), dtype=torch.float32)
    assert reference.tolist() == [0.0] * 7 + [1.0] * 3


def test_mask_keeps_the_region_the_model_reads() -> None:
    x = torch.ones(2, 3, 16, 16)
    # The logit is linear in the kept fraction of the region (a softmax would saturate before the
    # whole region is kept), so at the region's own area the best mask is the region itself, up
    # to the smoothness of a bilinear 2-pixel lattice at its border.
    result = faithmap.explain(
        ReadsOneRegion(),
        x,
        method="extremal",
        target=0,
        area=36 / 256,
        grid=2,
        fill=0.0,
        activation="logits",
    )
    mask = result.attributions[:, 0]
    assert mask.shape == (2, 16, 16) and float(mask.min()) >= 0 and float(mask.max()) <= 1
    inside, outside = mask[:, INSIDE[0, 0]], mask[:, ~INSIDE[0, 0]]
    assert bool((inside.mean(1) > 0.85).all()), inside.mean(1)
    assert bool((outside.mean(1) < 0.1).all()), outside.mean(1)
    # the area term keeps the requested area: pixels above one half cover 36 / 256 of the image
    kept = (mask > 0.5).flatten(1).float().mean(1)
    torch.testing.assert_close(kept, torch.full((2,), 36 / 256), atol=0.01, rtol=0)
    # and the 36 most-kept pixels are mostly the region's (its corners are rounded by smoothing)
    top = mask.flatten(1).topk(36, dim=1).indices
    assert bool((INSIDE.flatten()[top].float().mean(1) >= 0.8).all())
    assert (result.cost.forward, result.cost.backward) == (2 * 300, 2 * 300)


def test_needs_gradients() -> None:
    with pytest.raises(faithmap.ModelError, match="needs gradients"):
        faithmap.explain(
            lambda x: x.flatten(1)[:, :2],
            torch.rand(1, 3, 8, 8),
            method="extremal",
            target=0,
            iterations=2,
            grid=4,
        )


def test_bad_area() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match="'area' parameter"):
        faithmap.get_method("extremal", area=0.0)


def test_float32_and_float64_find_the_same_mask(tiny_net: nn.Module, images: torch.Tensor) -> None:
    # SGD's steps are proportional to the gradient: rounding-sized differences between the two
    # precisions stay rounding-sized (Adam's normalised steps made them full steps from the flat
    # start, and the masks differed by up to 0.8)
    single = faithmap.explain(tiny_net, images, method="extremal", iterations=40, grid=4)
    double_net = copy.deepcopy(tiny_net).double()
    double = faithmap.explain(double_net, images.double(), method="extremal", iterations=40, grid=4)
    assert double.attributions.dtype == torch.float64
    difference = (single.attributions.double() - double.attributions).abs().max()
    assert float(difference) < 1e-4, float(difference)
    # and the masks are not trivially equal: they moved away from the flat start
    assert float(single.attributions.std()) > 0.1
