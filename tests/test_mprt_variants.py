"""The MPRT variants of Hedström et al. (2023): smooth MPRT and efficient MPRT.

Closed forms on a linear model (whose randomised weights the test draws itself), the histogram
entropy against numpy + scipy, the user's model left as found, and agreement with Quantus 0.6.0
on a model with one layer to randomise (Quantus re-seeds every layer with ``seed + 1``, so
``seed = s + 1`` here matches its ``seed = s`` there) with the same input noise.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch
from torch import Tensor, nn

from faithmap import explain
from faithmap.core.registry import make_method
from faithmap.metrics import (
    efficient_model_randomisation,
    smooth_model_randomisation,
    smoothing_noise,
)
from faithmap.metrics.mprt_variants import histogram_entropy


def _numpy_entropy(values: np.ndarray, bins: int) -> float:
    counts, _ = np.histogram(values, bins=bins)
    return float(scipy.stats.entropy(counts))


def test_histogram_entropy_by_hand() -> None:
    maps = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    expected = torch.tensor([np.log(2), np.log(4), 0.0], dtype=torch.float64)
    torch.testing.assert_close(histogram_entropy(maps, 2)[:1], expected[:1])
    torch.testing.assert_close(histogram_entropy(maps, 4), expected)


@pytest.mark.parametrize("bins", [1, 7, 100])
def test_histogram_entropy_matches_numpy_and_scipy(bins: int) -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.cat(
        [
            torch.randn(3, 1, 12, 12, generator=generator, dtype=torch.float64),
            # values on the bin edges of 100 and 7 bins
            torch.arange(144, dtype=torch.float64).view(1, 1, 12, 12) % 101,
            torch.linspace(-1, 1, 144, dtype=torch.float64).view(1, 1, 12, 12),
        ]
    )
    expected = torch.tensor([_numpy_entropy(m.numpy(), bins) for m in maps], dtype=torch.float64)
    torch.testing.assert_close(histogram_entropy(maps, bins), expected, rtol=1e-12, atol=1e-12)


def _linear() -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Linear(24, 3)


def _randomised(net: nn.Linear, seed: int) -> nn.Linear:
    """The test's own randomisation of a one-layer model: reset_parameters under ``seed``."""
    twin = copy.deepcopy(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin.reset_parameters()
    return twin


def test_efficient_mprt_of_a_linear_model_by_hand() -> None:
    net = _linear()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(4, 24, generator=torch.Generator().manual_seed(1)) - 0.5
    exp = explain(net, x, method="input_x_gradient")
    assert exp.target is not None
    result = efficient_model_randomisation(net, x, exp, seed=5, n_bins=10)
    weights = _randomised(net, 5).weight.detach()
    random_maps = (x * weights[exp.target]).numpy()
    original_maps = (x * net.weight.detach()[exp.target]).numpy()
    h0 = np.array([_numpy_entropy(m, 10) for m in original_maps])
    h1 = np.array([_numpy_entropy(m, 10) for m in random_maps])
    torch.testing.assert_close(result.values.double(), torch.from_numpy((h1 - h0) / h0))
    torch.testing.assert_close(result.original_entropy.double(), torch.from_numpy(h0))
    assert result.layers == ("",)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_smooth_mprt_of_a_linear_model_by_hand() -> None:
    # input x gradient of a linear model is linear in x: the smoothed map is x_bar * w_t with
    # x_bar the mean of the copies (x itself among them)
    net, n, noise = _linear(), 5, 0.2
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(4, 24, generator=torch.Generator().manual_seed(1)) - 0.5
    exp = explain(net, x, method="input_x_gradient")
    assert exp.target is not None
    result = smooth_model_randomisation(net, x, exp, n_samples=n, noise=noise, seed=3)
    spread = (x.amax(1) - x.amin(1))[:, None, None]
    copies = torch.cat([x[:, None], x[:, None] + noise * spread * smoothing_noise(x, n, 3)], 1)
    mean = copies.double().mean(1)
    random_weights = _randomised(net, 3).weight.detach().double()
    original = (mean * net.weight.detach().double()[exp.target]).abs().numpy()
    random = (mean * random_weights[exp.target]).abs().numpy()
    expected = [scipy.stats.spearmanr(a, b)[0] for a, b in zip(original, random, strict=True)]
    torch.testing.assert_close(
        result.values.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )
    assert result.similarities.shape == (4, 1)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _two_layers() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(24, 8), nn.Tanh(), nn.Linear(8, 3)).train()


def test_layer_orders_and_the_model_left_as_found() -> None:
    net = _two_layers()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(3, 24, generator=torch.Generator().manual_seed(1))
    exp = explain(net, x, method="input_x_gradient")
    up = smooth_model_randomisation(net, x, exp, n_samples=3, summary="last")
    down = smooth_model_randomisation(net, x, exp, n_samples=3, layer_order="top_down")
    assert up.layers == ("0", "2") and down.layers == ("2", "0")
    # the last stage of both orders is the same fully random model (layer j from seed + j)
    torch.testing.assert_close(up.values, down.similarities[:, -1])
    efficient_model_randomisation(net, x, exp)
    assert net.training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------- Quantus


def _quantus() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


def _one_layer_cnn() -> nn.Sequential:
    """Only the convolution has parameters to reset: Quantus and faithmap randomise the same."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        ).eval()


def _images() -> Tensor:
    return torch.rand(4, 3, 12, 12, generator=torch.Generator().manual_seed(2))


def test_efficient_mprt_agrees_with_quantus() -> None:
    net, x = _one_layer_cnn(), _images()
    exp = explain(net, x, method="input_x_gradient")
    assert exp.target is not None
    explainer = make_method("input_x_gradient")

    def explain_func(model: nn.Module, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
        maps = explainer.explain(
            model, torch.as_tensor(inputs), torch.as_tensor(targets)
        ).attributions
        values: np.ndarray = maps.detach().double().numpy()
        return values

    metric = _quantus().EfficientMPRT(seed=42, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=exp.target.numpy(),
            a_batch=exp.attributions.double().numpy(),
            explain_func=explain_func,
            device="cpu",
            channel_first=True,
        )
    values = efficient_model_randomisation(net, x, exp, seed=43).values
    torch.testing.assert_close(
        values.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-7
    )


def _cycling(draws: Tensor) -> Iterator[np.ndarray]:
    while True:
        for j in range(draws.shape[1]):
            yield draws[:, j].double().numpy()


def test_smooth_mprt_agrees_with_quantus(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, n = _one_layer_cnn(), _images(), 6
    exp = explain(net, x, method="input_x_gradient")
    assert exp.target is not None
    # Quantus draws np.random.randn(*x.shape) for the n - 1 noisy copies of every smoothed
    # batch; hand it the draws faithmap uses, the same ones for every model
    draws = _cycling(smoothing_noise(x, n, 43))

    def randn(*shape: int) -> np.ndarray:
        draw = next(draws)
        assert draw.shape == shape
        return draw

    monkeypatch.setattr(np.random, "randn", randn)
    quantus = _quantus()
    metric = quantus.SmoothMPRT(
        seed=42, nr_samples=n, return_last_correlation=True, disable_warnings=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = metric(
            model=net,
            x_batch=x.numpy(),
            y_batch=exp.target.numpy(),
            a_batch=None,
            explain_func=quantus.explain,
            explain_func_kwargs={"method": "InputXGradient"},
            device="cpu",
            channel_first=True,
        )
    result = smooth_model_randomisation(net, x, exp, n_samples=n, seed=43, summary="last")
    torch.testing.assert_close(
        result.values.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6
    )


def test_efficient_mprt_of_one_sample_is_its_value_in_the_batch() -> None:
    net = _one_layer_cnn()
    x = _images()
    exp = explain(net, x, method="input_x_gradient")
    whole = efficient_model_randomisation(net, x, exp, seed=1).values
    for i in range(x.shape[0]):
        one = efficient_model_randomisation(
            net,
            x[i : i + 1],
            exp.attributions[i : i + 1],
            method="input_x_gradient",
            target=exp.target[i : i + 1] if exp.target is not None else None,
            seed=1,
        )
        torch.testing.assert_close(one.values, whole[i : i + 1], rtol=1e-5, atol=1e-6)
