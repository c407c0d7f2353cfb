"""Input x Gradient, the noise tunnel, GradientSHAP and Guided Backprop.

Agreement with Captum on the built-in CNN within 1e-5, with Captum's random draws replaced by
faithmap's (``torch.normal`` for noise, ``np.random.choice`` for background rows and
``np.random.uniform`` for path points): Captum still builds the noisy copies, the path points,
the batches and the averages itself. Captum puts all rows of a call in one batch, so faithmap
gets that batch size too (convolutions round differently at other batch sizes and a max-pooling
tie can then flip). Closed-form oracles on linear models, and errors for bad parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import GradientShap as CaptumGradientShap
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import NoiseTunnel as CaptumNoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from torch import nn

import faithmap
from conftest import TinyNet
from faithmap import Model
from faithmap.data import make_shapes
from faithmap.methods import GradientShap, NoiseTunnel
from faithmap.methods import noise_tunnel as noise_tunnel_module
from faithmap.methods.noise_tunnel import Kind
from faithmap.zoo import load_builtin

ATOL = 1e-5
pytestmark = pytest.mark.filterwarnings(
    "ignore:Input Tensor 0 did not already require gradients",
    "ignore:Setting backward hooks on ReLU activations",
)


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    return load_builtin("cnn")


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = make_shapes(3, seed=5, size=32)
    return data.images, data.labels


@contextmanager
def captum_draws(
    noise: torch.Tensor | None = None,
    indices: torch.Tensor | None = None,
    alphas: torch.Tensor | None = None,
) -> Iterator[None]:
    """Make Captum draw faithmap's per-copy randomness, the same for every sample, sample-major."""
    patch = pytest.MonkeyPatch()

    def normal(mean: float, std: torch.Tensor) -> torch.Tensor:
        assert noise is not None and mean == 0
        copies = std.shape[0] // noise.shape[0]
        return noise.repeat(copies, *([1] * (noise.dim() - 1))) * std

    def choice(size: int, count: int) -> np.ndarray:
        assert indices is not None and count % len(indices) == 0
        assert int(indices.max()) < size
        return indices.repeat(count // len(indices)).numpy()

    def uniform(low: float, high: float, count: int) -> np.ndarray:
        assert alphas is not None and (low, high) == (0.0, 1.0) and count % len(alphas) == 0
        return alphas.double().repeat(count // len(alphas)).numpy()

    if noise is not None:
        patch.setattr(torch, "normal", normal)
    if indices is not None:
        patch.setattr(np.random, "choice", choice)
    if alphas is not None:
        patch.setattr(np.random, "uniform", uniform)
    try:
        yield
    finally:
        patch.undo()


def sigma(x: torch.Tensor, stdev: float) -> float:
    """SmoothGrad's noise level of one sample: a fraction of its value range."""
    return float(stdev * (x.max() - x.min()))


# ------------------------------------------------------------------ Input x Gradient
def test_input_x_gradient_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, labels = batch
    model = Model(cnn, batch_size=x.shape[0])
    ours = faithmap.explain(model, x, method="input_x_gradient", target=labels, reduce="none")
    theirs = CaptumInputXGradient(cnn).attribute(x, target=labels)
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)
    summed = faithmap.explain(model, x, method="input_x_gradient", target=labels)
    torch.testing.assert_close(summed.attributions, theirs.sum(1, keepdim=True), atol=ATOL, rtol=0)


def test_input_x_gradient_of_a_linear_model_is_x_times_w() -> None:
    torch.manual_seed(0)
    net = nn.Linear(6, 3)
    x = torch.randn(4, 6)
    target = torch.tensor([0, 2, 1, 2])
    ours = faithmap.explain(net, x, method="input_x_gradient", target=target).attributions
    torch.testing.assert_close(ours, x * net.weight[target], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- Guided Backprop
def test_guided_backprop_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, labels = batch
    model = Model(cnn, batch_size=x.shape[0])
    ours = faithmap.explain(model, x, method="guided_backprop", target=labels, reduce="none")
    theirs = CaptumGuidedBackprop(cnn).attribute(x, target=labels)
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)
    assert not torch.equal(
        ours.attributions,
        faithmap.explain(
            model, x, method="saliency", target=labels, reduce="none", absolute=False
        ).attributions,
    )


class FunctionalNet(nn.Module):
    """TinyNet's layers with ReLU called functionally, in place and not."""

    def __init__(self, net: TinyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.net.features
        h = F.relu(features[1](features[0](x)), inplace=True)
        h = features[3](h).relu()
        logits: torch.Tensor = self.net.head(h.mean(dim=(2, 3)))
        return logits


def test_guided_backprop_replaces_functional_relus(tiny_net: TinyNet) -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ours = faithmap.explain(
        FunctionalNet(tiny_net), x, method="guided_backprop", target=1, reduce="none"
    )
    theirs = CaptumGuidedBackprop(tiny_net).attribute(x, target=1)  # nn.ReLU modules
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


class ReluThenFails(nn.Module):
    """Calls a ReLU, then raises."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F.relu(x)
        raise RuntimeError("simulated failure")


def test_guided_backprop_leaves_relu_gradients_alone_afterwards(tiny_net: TinyNet) -> None:
    faithmap.explain(tiny_net, torch.rand(1, 3, 16, 16), method="guided_backprop")
    with pytest.raises(faithmap.ModelError, match="simulated failure"):
        faithmap.explain(  # a callable target: the first model call is the guided one
            Model(ReluThenFails(), batch_size=1),
            torch.rand(1, 3),
            method="guided_backprop",
            target=lambda output: output[:, 0],
        )
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    (gradient,) = torch.autograd.grad((F.relu(x) * torch.tensor([3.0, -4.0])).sum(), x)
    assert gradient.tolist() == [0.0, -4.0]


def test_guided_backprop_without_a_relu_raises() -> None:
    with pytest.raises(faithmap.ModelError, match="found no ReLU"):
        faithmap.explain(nn.Linear(4, 2), torch.rand(2, 4), method="guided_backprop")


# -------------------------------------------------------------------------- noise tunnel
@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("absolute", [False, True])
def test_noise_tunnel_over_saliency_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], kind: Kind, absolute: bool
) -> None:
    x, labels = batch
    n, stdev = 5, 0.2
    tunnel = NoiseTunnel(
        kind=kind, n_samples=n, stdev=stdev, reduce="none", base_params={"absolute": absolute}
    )
    ours = tunnel.explain(Model(cnn, batch_size=n), x, target=labels).attributions
    captum = CaptumNoiseTunnel(CaptumSaliency(cnn))
    for i in range(x.shape[0]):
        with captum_draws(noise=tunnel.noise(tuple(x.shape[1:]))):
            theirs = captum.attribute(
                x[i : i + 1],
                nt_type=kind,
                nt_samples=n,
                stdevs=sigma(x[i], stdev),
                target=int(labels[i]),
                abs=absolute,
            )
        torch.testing.assert_close(ours[i : i + 1], theirs, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["smoothgrad", "vargrad"])
def test_noise_tunnel_over_integrated_gradients_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], kind: Kind
) -> None:
    x, labels = batch
    n, steps, stdev = 3, 4, 0.1
    tunnel = NoiseTunnel(
        kind=kind,
        base="integrated_gradients",
        base_params={"steps": steps},
        n_samples=n,
        stdev=stdev,
        reduce="none",
    )
    ours = tunnel.explain(Model(cnn, batch_size=n * steps), x, target=labels).attributions
    captum = CaptumNoiseTunnel(CaptumIG(cnn))
    for i in range(x.shape[0]):
        with captum_draws(noise=tunnel.noise(tuple(x.shape[1:]))):
            theirs = captum.attribute(
                x[i : i + 1],
                nt_type=kind,
                nt_samples=n,
                stdevs=sigma(x[i], stdev),
                target=int(labels[i]),
                baselines=0.0,
                n_steps=steps,
            )
        torch.testing.assert_close(ours[i : i + 1], theirs, atol=ATOL, rtol=0)


def test_smoothgrad_with_one_sample_and_no_noise_is_the_gradient(tiny_net: TinyNet) -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    ours = faithmap.explain(
        tiny_net, x, method="smoothgrad", target=2, n_samples=1, stdev=0.0, reduce="none"
    ).attributions
    rows = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(tiny_net(rows)[:, 2].sum(), rows)
    torch.testing.assert_close(ours, gradient, atol=1e-6, rtol=0)


def test_noise_tunnel_over_input_x_gradient_of_a_linear_model() -> None:
    """Over Input x Gradient, SmoothGrad of ``w . x`` is ``w * mean(x + noise)``."""
    torch.manual_seed(1)
    net = nn.Linear(5, 2)
    x = torch.randn(3, 5)
    tunnel = NoiseTunnel(base="input_x_gradient", n_samples=6, stdev=0.3, reduce="none")
    ours = tunnel.explain(net, x, target=1).attributions
    noise = tunnel.noise((5,))
    noisy_mean = x + 0.3 * (x.amax(1, keepdim=True) - x.amin(1, keepdim=True)) * noise.mean(0)
    torch.testing.assert_close(ours, noisy_mean * net.weight[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("base", ["integrated_gradients", "guided_backprop", "gradient_shap"])
def test_noise_tunnel_batch_size_and_grouping_do_not_change_the_result(
    tiny_net: TinyNet, images: torch.Tensor, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params: dict[str, Any] = {"steps": 3} if base == "integrated_gradients" else {}
    if base == "gradient_shap":
        params = {"n_samples": 3, "background": torch.rand(2, 3, 16, 16)}
    tunnel = NoiseTunnel(kind="vargrad", base=base, base_params=params, n_samples=3)
    one = tunnel.explain(Model(tiny_net, batch_size=1), images).attributions
    many = tunnel.explain(Model(tiny_net, batch_size=64), images).attributions
    monkeypatch.setattr(noise_tunnel_module, "COPY_BUFFER_BYTES", 1)  # one sample per group
    grouped = tunnel.explain(Model(tiny_net, batch_size=7), images).attributions
    torch.testing.assert_close(one, many, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(one, grouped, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- GradientSHAP
def test_gradient_shap_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, labels = batch
    background = make_shapes(7, seed=9, size=32).images
    method = GradientShap(background=background, n_samples=6, reduce="none", seed=3)
    ours = method.explain(Model(cnn, batch_size=x.shape[0] * 6), x, target=labels).attributions
    draws = method.draws(tuple(x.shape[1:]))
    assert len(set(draws.background.tolist())) > 1  # the test really mixes baselines
    with captum_draws(indices=draws.background, alphas=draws.alphas):
        theirs = CaptumGradientShap(cnn).attribute(
            x, baselines=background, n_samples=6, target=labels
        )
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)


def test_gradient_shap_with_noise_agrees_with_captum(
    cnn: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> None:
    x, labels = batch
    background = make_shapes(4, seed=8, size=32).images
    method = GradientShap(background=background, n_samples=5, stdev=0.1, reduce="none")
    ours = method.explain(Model(cnn, batch_size=5), x, target=labels).attributions
    draws = method.draws(tuple(x.shape[1:]))
    for i in range(x.shape[0]):
        with captum_draws(noise=draws.noise, indices=draws.background, alphas=draws.alphas):
            theirs = CaptumGradientShap(cnn).attribute(
                x[i : i + 1],
                baselines=background,
                n_samples=5,
                stdevs=sigma(x[i], 0.1),
                target=int(labels[i]),
            )
        torch.testing.assert_close(ours[i : i + 1], theirs, atol=ATOL, rtol=0)


def test_gradient_shap_of_a_linear_model_is_x_minus_background_mean_times_w() -> None:
    torch.manual_seed(2)
    net = nn.Linear(4, 3)
    x, background = torch.randn(5, 4), torch.randn(1, 4)
    ours = faithmap.explain(
        net, x, method="gradient_shap", target=0, background=background, n_samples=7
    ).attributions
    torch.testing.assert_close(ours, (x - background) * net.weight[0], atol=1e-6, rtol=0)
    # completeness: attributions sum to f(x) - f(b)
    with torch.no_grad():
        gap = net(x)[:, 0] - net(background)[:, 0]
    torch.testing.assert_close(ours.sum(1), gap, atol=1e-5, rtol=0)


def test_gradient_shap_record_describes_the_background() -> None:
    background = torch.zeros(2, 3, 4, 4)
    config = GradientShap(background=background).config()
    assert config["background"].startswith("Tensor(shape=(2, 3, 4, 4), dtype=torch.float32")
    assert config != GradientShap(background=background + 1).config()
    assert "background" not in repr(GradientShap(background=background))


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("smoothgrad", {"kind": "grad"}, "'kind' parameter of NoiseTunnel must be one of"),
        ("smoothgrad", {"n_samples": 0}, "'n_samples' parameter of NoiseTunnel must be an int"),
        ("smoothgrad", {"stdev": -0.1}, "'stdev' parameter of NoiseTunnel must be a finite"),
        ("smoothgrad", {"base": "nope"}, "Unknown method 'nope'"),
        ("smoothgrad", {"base": "occlusion"}, "cannot attribute perturbed copies"),
        ("smoothgrad", {"base": "smoothgrad"}, "other than 'smoothgrad'"),
        ("smoothgrad", {"base_params": {"reduce": "sum"}}, "cannot set 'reduce'"),
        ("smoothgrad", {"base_params": {"steps": 3}}, "do not fit the method 'saliency'"),
        ("smoothgrad", {"base_params": [1]}, "must be a mapping"),
        ("gradient_shap", {"n_samples": 0}, "'n_samples' parameter of GradientShap"),
        ("gradient_shap", {"stdev": float("nan")}, "'stdev' parameter of GradientShap"),
        ("gradient_shap", {"background": torch.zeros(0, 3)}, "'background' parameter"),
        ("gradient_shap", {"baseline": "zeros"}, "'baseline' parameter of GradientShap"),
        ("input_x_gradient", {"reduce": "median"}, "'reduce' parameter of InputXGradient"),
        ("guided_backprop", {"activation": "sigmoid"}, "'activation' parameter of GuidedBack"),
    ],
)
def test_bad_parameters_raise(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(faithmap.errors.InvalidParameterError, match=message):
        faithmap.get_method(name, **params)


def test_background_of_the_wrong_shape_raises(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(faithmap.errors.ShapeError, match="background rows must have"):
        faithmap.explain(tiny_net, images, method="gradient_shap", background=torch.zeros(2, 3))
