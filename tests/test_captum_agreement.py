"""Agreement with Captum on the built-in CNN, same inputs and settings, within 1e-5.

Captum runs every step of a sample in one batch. Convolutions round differently at different
batch sizes, and on a max-pooling network a near-tie can then pick another maximum, moving a
gradient to a neighbouring pixel. So float32 comparisons give faithmap Captum's batch
composition, and float64 comparisons (where such ties do not flip) use faithmap's own batching.
"""

from __future__ import annotations

import copy

import pytest
import torch
from captum.attr import IntegratedGradients, Occlusion, Saliency

import faithmap
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin

ATOL = 1e-5


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    return load_builtin("cnn")


@pytest.fixture(scope="module")
def cnn64(cnn: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(cnn).double()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = make_shapes(4, seed=11)
    return data.images, data.labels


@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_saliency(cnn: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, labels = batch
    ours = faithmap.explain(cnn, x, method="saliency", target=labels, reduce="none")
    theirs = Saliency(cnn).attribute(x, target=labels, abs=True)
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)
    best = faithmap.explain(cnn, x, method="saliency", target=labels)
    torch.testing.assert_close(best.attributions, theirs.amax(1, keepdim=True), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    ("rule", "captum_method"),
    [
        ("gausslegendre", "gausslegendre"),
        ("riemann_left", "riemann_left"),
        ("riemann_right", "riemann_right"),
        ("riemann_middle", "riemann_middle"),
    ],
)
def test_integrated_gradients(
    cnn: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], rule: str, captum_method: str
) -> None:
    x, labels = batch
    one_batch = faithmap.Model(cnn, batch_size=x.shape[0] * 32)
    ours = faithmap.explain(
        one_batch,
        x,
        method="integrated_gradients",
        target=labels,
        steps=32,
        rule=rule,
        reduce="none",
    )
    theirs = IntegratedGradients(cnn).attribute(
        x, baselines=0.0, target=labels, n_steps=32, method=captum_method
    )
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


def test_integrated_gradients_in_float64_with_measured_batching(
    cnn64: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, labels = batch[0].double(), batch[1]
    ours = faithmap.explain(
        cnn64, x, method="integrated_gradients", target=labels, steps=32, reduce="none"
    )
    theirs = IntegratedGradients(cnn64).attribute(x, baselines=0.0, target=labels, n_steps=32)
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


def test_integrated_gradients_with_a_blur_baseline(
    cnn: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    from faithmap.core.removal import gaussian_blur

    x, labels = batch
    ours = faithmap.explain(
        cnn,
        x,
        method="integrated_gradients",
        target=labels,
        steps=16,
        baseline="blur",
        reduce="none",
    )
    theirs = IntegratedGradients(cnn).attribute(
        x, baselines=gaussian_blur(x, 11, 5.0), target=labels, n_steps=16
    )
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("window", "stride"), [(8, 4), (6, 5)])
def test_occlusion(
    cnn: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], window: int, stride: int
) -> None:
    x, labels = batch
    ours = faithmap.explain(cnn, x, method="occlusion", target=labels, window=window, stride=stride)
    theirs = Occlusion(cnn).attribute(
        x,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=0.0,
        target=labels,
        perturbations_per_eval=16,
    )
    for channel in range(3):  # a window covers all channels, so Captum repeats the map
        torch.testing.assert_close(ours.attributions[:, 0], theirs[:, channel], atol=ATOL, rtol=0)
