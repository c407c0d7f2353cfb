"""Relative stability (RIS, ROS, RRS; Agarwal et al. 2022): closed forms, the prediction rule,
the model left as found, and agreement with Quantus 0.6.0 on the same noise."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from faithmap import Model, explain
from faithmap.bench.config import BenchConfig
from faithmap.core.registry import make_method
from faithmap.errors import InvalidParameterError
from faithmap.evaluation import evaluate
from faithmap.metrics import (
    input_perturbations,
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)


def _linear(seed: int = 0, features: int = 5, classes: int = 3) -> nn.Linear:
    net = nn.Linear(features, classes)
    with torch.no_grad():
        net.weight.copy_(
            torch.randn(classes, features, generator=torch.Generator().manual_seed(seed))
        )
        net.bias.zero_()
    return net


def _rows(n: int = 4, features: int = 5) -> Tensor:
    return 0.5 + torch.rand(n, features, generator=torch.Generator().manual_seed(7))


def test_input_x_gradient_of_a_linear_model_has_ris_one() -> None:
    # e = x * w_t, so (e - e') / e = (x - x') / x element by element: the ratio is exactly 1
    net, x = _linear(), _rows()
    exp = explain(net, x, method="input_x_gradient")
    values = relative_input_stability(net, x, exp, n_samples=6, radius=0.01).values
    torch.testing.assert_close(values, torch.ones(4, dtype=torch.float64), rtol=1e-5, atol=0.0)


def test_saliency_of_a_linear_model_has_zero_stability_ratios() -> None:
    # the gradient of a linear model does not depend on x: the explanation never moves
    net, x = _linear(), _rows()
    exp = explain(net, x, method="saliency")
    for metric in (relative_input_stability, relative_output_stability):
        assert torch.equal(
            metric(net, x, exp, n_samples=4, radius=0.01).values,
            torch.zeros(4, dtype=torch.float64),
        )


def test_ros_of_a_linear_model_by_hand() -> None:
    # e = x * w_t: numerator ||(x - x') / x||, denominator ||W (x - x')|| (no bias)
    net, x = _linear(), _rows()
    exp = explain(net, x, method="input_x_gradient")
    shifts = input_perturbations(x, 6, 0.2, 3, uniform=True)
    moved = x[:, None] + shifts
    numerator = ((x[:, None] - moved) / x[:, None]).double().norm(dim=2)
    denominator = ((x[:, None] - moved).double() @ net.weight.double().T).norm(dim=2)
    expected = (numerator / denominator).amax(1)
    values = relative_output_stability(
        net, x, exp, n_samples=6, radius=0.2, seed=3, keep_prediction=False
    ).values
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=0.0)


def test_rrs_with_an_identity_layer_equals_ris() -> None:
    # a first layer that copies its input: L_x = x, so RRS = RIS (= 1 for input x gradient)
    first = nn.Linear(5, 5)
    with torch.no_grad():
        first.weight.copy_(torch.eye(5))
        first.bias.zero_()
    net, x = nn.Sequential(first, _linear()), _rows()
    exp = explain(net, x, method="input_x_gradient")
    rrs = relative_representation_stability(net, x, exp, layer="0", n_samples=5, radius=0.01)
    torch.testing.assert_close(rrs.values, torch.ones(4, dtype=torch.float64), rtol=1e-5, atol=0.0)
    assert rrs.choices["layer"] == "0"


class _Boundary(nn.Module):
    """Two classes scored ``+s`` and ``-s`` with ``s = x_0 - 1``: the class flips at x_0 = 1."""

    def forward(self, x: Tensor) -> Tensor:
        s = x[:, :1] - 1.0
        return torch.cat([s * x[:, 1:].sum(1, keepdim=True), -s], dim=1)


def test_copies_that_change_the_prediction_are_left_out() -> None:
    x = torch.tensor([[1.004, 1.0, 2.0], [3.0, 1.0, 2.0]])
    net, radius, n, seed = _Boundary(), 0.01, 16, 6
    exp = explain(net, x, method="input_x_gradient")
    kept = relative_input_stability(net, x, exp, n_samples=n, radius=radius, seed=seed).values
    every = relative_input_stability(
        net, x, exp, n_samples=n, radius=radius, seed=seed, keep_prediction=False
    ).values
    shifts = input_perturbations(x, n, radius, seed, uniform=True)
    moved = x[:, None] + shifts
    flipped = moved[..., 0] < 1.0
    assert bool(flipped[0].any()) and not bool(flipped[1].any())

    # the ratios by hand: e = x * grad, grad = (x_1 + x_2, x_0 - 1, x_0 - 1) for class 0
    def maps(rows: Tensor) -> Tensor:
        grad = torch.stack([rows[..., 1] + rows[..., 2], rows[..., 0] - 1, rows[..., 0] - 1], -1)
        return (rows * grad).double()

    e, e_moved = maps(x)[:, None], maps(moved)
    inputs_change = ((x[:, None] - moved) / x[:, None]).double().norm(dim=2)
    ratios = ((e - e_moved) / e).norm(dim=2) / inputs_change
    assert bool(flipped[0, ratios[0].argmax()])  # seed 6: the largest ratio is a flipped copy
    torch.testing.assert_close(every, ratios.amax(1), rtol=1e-4, atol=0.0)
    expected = torch.where(flipped, -torch.inf, ratios).amax(1)
    torch.testing.assert_close(kept, expected, rtol=1e-4, atol=0.0)


class _Peak(nn.Module):
    """Class 0 scores ``-|x_0 - 1|``, class 1 ``-0.001`` (both plus ``1e-4 x_1``): class 0 only
    within 0.001 of ``x_0 = 1``."""

    def forward(self, x: Tensor) -> Tensor:
        tie = 1e-4 * x[:, 1:]  # so that both classes have a gradient
        return torch.cat([tie - (x[:, :1] - 1.0).abs(), tie - 0.001], dim=1)


def test_a_sample_whose_every_copy_flips_is_nan() -> None:
    net, n, radius = _Peak(), 4, 0.1
    x = torch.tensor([[1.0, 0.5], [3.0, 0.5]])  # class 0, then class 1 (kept by every copy)
    exp = explain(net, x, method="input_x_gradient")
    shifts = input_perturbations(x, n, radius, 0, uniform=True)
    assert bool((shifts[0, :, 0].abs() > 0.001).all())  # every copy of sample 0 flips
    values = relative_input_stability(net, x, exp, n_samples=n, radius=radius).values
    assert bool(values[0].isnan()) and bool(values[1].isfinite())


def test_bad_layer_names_the_layers() -> None:
    net, x = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), _rows()
    exp = explain(net, x, method="input_x_gradient")
    with pytest.raises(InvalidParameterError, match=r"'layer' parameter.*Got 'fc'.*0, 1, 2"):
        relative_representation_stability(net, x, exp, layer="fc", n_samples=2)


def test_evaluate_without_a_layer_says_how_to_pass_one() -> None:
    net, x = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)), _rows()
    exp = explain(net, x, method="input_x_gradient")
    with pytest.raises(InvalidParameterError, match=r"needs 'layer'.*params=\{'relative_repr"):
        evaluate(net, x, exp, metrics=["relative_representation_stability"])
    with pytest.raises(InvalidParameterError, match=r"needs 'layer'"):
        BenchConfig(metrics=["relative_representation_stability"])


def test_model_left_as_found() -> None:
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = _rows()
    exp = explain(net, x, method="input_x_gradient")
    relative_representation_stability(net, x, exp, layer="1", n_samples=3)
    relative_output_stability(net, x, exp, n_samples=3)
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batch_size_does_not_change_rrs_of_a_cnn() -> None:
    torch.manual_seed(0)
    net = _cnn()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    exp = explain(net, x, method="input_x_gradient")
    one = relative_representation_stability(
        Model(net, batch_size=1), x, exp, layer="1", n_samples=3, radius=0.1
    )
    many = relative_representation_stability(
        Model(net, batch_size=9), x, exp, layer="1", n_samples=3, radius=0.1
    )
    torch.testing.assert_close(one.values, many.values, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- Quantus


def _cnn() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 3),
        ).eval()


def _quantus() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


def _explain_func(method: str) -> Callable[..., np.ndarray]:
    explainer = make_method(method)

    def explain_func(model: nn.Module, inputs: Any, targets: Any, **_: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        return explainer.explain(Model(model), x, y).attributions.detach().numpy()

    return explain_func


def _fixed_noise(noise: Tensor) -> Callable[..., np.ndarray]:
    """A Quantus perturb_func adding ``noise[:, j]`` at its ``j``-th call (not its own draw)."""
    calls = iter(range(noise.shape[1]))

    def perturb(arr: np.ndarray, **_: Any) -> np.ndarray:
        draw: np.ndarray = noise[:, next(calls)].reshape(arr.shape[0], -1).numpy()
        moved: np.ndarray = arr + draw
        return moved

    return perturb


def _quantus_value(name: str, noise: Tensor, data: dict[str, Any], **extra: Any) -> np.ndarray:
    quantus = _quantus()
    metric = getattr(quantus, name)(
        nr_samples=noise.shape[1],
        perturb_func=_fixed_noise(noise),
        disable_warnings=True,
        **extra,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(**data), dtype=float)


def _quantus_case(radius: float) -> tuple[nn.Sequential, Tensor, Any, dict[str, Any]]:
    net = _cnn()
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)) + 0.5
    exp = explain(net, x, method="input_x_gradient")
    assert exp.target is not None
    data = {
        "model": net,
        "x_batch": x.numpy(),
        "y_batch": exp.target.numpy(),
        "a_batch": exp.attributions.numpy(),
        "explain_func": _explain_func("input_x_gradient"),
        "device": "cpu",
        "channel_first": True,
    }
    return net, x, exp, data


@pytest.mark.parametrize(
    ("ours", "theirs", "extra"),
    [
        (relative_input_stability, "RelativeInputStability", {}),
        (relative_output_stability, "RelativeOutputStability", {}),
        (relative_representation_stability, "RelativeRepresentationStability", {"layer": "1"}),
    ],
)
def test_agrees_with_quantus_on_the_same_noise(
    ours: Callable[..., Any], theirs: str, extra: dict[str, str]
) -> None:
    n, radius = 6, 0.02
    net, x, exp, data = _quantus_case(radius)
    noise = input_perturbations(x, n, radius, 0, uniform=True)
    options = {"layer_names": [extra["layer"]]} if extra else {}
    expected = _quantus_value(theirs, noise, data, **options)
    assert np.isfinite(expected).all()  # no copy changed the prediction at this radius
    values = ours(net, x, exp, n_samples=n, radius=radius, **extra).values
    torch.testing.assert_close(values, torch.from_numpy(expected), rtol=1e-6, atol=0.0)


def test_quantus_gives_nan_where_one_copy_flips_here_the_max_of_the_rest() -> None:
    # Quantus' np.max over draws turns a sample NaN as soon as one copy changes the prediction;
    # here the maximum runs over the copies that keep it. Run Quantus one draw at a time: ours
    # is the nan-max of its single-draw values.
    n, radius = 8, 0.6
    net, x, exp, data = _quantus_case(radius)
    noise = input_perturbations(x, n, radius, 0, uniform=True)
    per_draw = np.stack(
        [_quantus_value("RelativeInputStability", noise[:, j : j + 1], data) for j in range(n)]
    )
    whole = _quantus_value("RelativeInputStability", noise, data)
    flips = np.isnan(per_draw)
    assert flips.any() and not flips.all(0).any()  # the case tests what it should
    assert np.array_equal(np.isnan(whole), flips.any(0))
    values = relative_input_stability(net, x, exp, n_samples=n, radius=radius).values
    expected = torch.from_numpy(np.nanmax(per_draw, axis=0))
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=0.0)
