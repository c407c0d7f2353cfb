"""Monotonicity, monotonicity correlation, IROF, Selectivity, Sensitivity-n, average drop and
increase, and completeness: hand-computed values on models whose output is an explicit function
of the input, batch invariance, and agreement with Quantus 0.6.0 (or the documented relation
where the definitions differ)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from skimage.segmentation import slic
from torch import Tensor, nn

from faithmap import Model
from faithmap.errors import InvalidParameterError
from faithmap.metrics import (
    average_drop,
    average_increase,
    completeness,
    irof,
    monotonicity,
    monotonicity_correlation,
    selectivity,
    sensitivity_n,
)


class Linear(nn.Module):
    """Class 0's logit is ``w . x + b``, class 1's is 0: every score is a hand sum."""

    def __init__(self, weights: list[float], bias: float = 0.0) -> None:
        super().__init__()
        self.w = torch.tensor(weights, dtype=torch.float32)
        self.b = bias
        self.eval()  # Quantus refuses a model in training mode

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([score, torch.zeros_like(score)], 1)


class Interaction(nn.Module):
    """Two features ``a, b`` (a 1x2 image): class 0's logit is ``2a - b + 2ab``."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.flatten(1).unbind(1)
        score = 2 * a - b + 2 * a * b
        return torch.stack([score, torch.zeros_like(score)], 1)


def _quantus() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    return quantus


def _run_quantus(metric: Any, **data: Any) -> list[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(metric(**data, device="cpu"))


def _seeded(*shape: int, seed: int) -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _normal(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


ONES_1X4 = torch.ones(1, 1, 1, 4)
HALVES = torch.tensor([[[0, 0, 1, 1]]])
"""Two regions of a 1x4 image: the left half and the right half."""


# ---------------------------------------------------------------- monotonicity


def test_monotonicity_hand_values() -> None:
    """Inserting a first: 0 -> 2 -> 3 (monotone); b first: 0 -> -1 -> 3 (not)."""
    x = torch.ones(2, 1, 1, 2)
    maps = torch.tensor([[0.1, 0.9], [0.9, 0.1]]).view(2, 1, 1, 2)
    result = monotonicity(Interaction(), x, maps, target=0, activation="logits")
    assert result.curve.tolist() == [[0.0, 2.0, 3.0], [0.0, -1.0, 3.0]]
    assert result.values.tolist() == [1.0, 0.0]
    assert result.cost.forward == 6


def test_monotonicity_linear_model_is_order_free() -> None:
    """On a linear model every order gives the same verdict: 1 iff no contribution is negative."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    maps = torch.stack([x[0], -x[0].flip(-1)])
    positive = monotonicity(Linear([1, 2, 0.5, 1]), x, maps, target=0, activation="logits")
    mixed = monotonicity(Linear([1, -2, 0.5, 1]), x, maps, target=0, activation="logits")
    assert positive.values.tolist() == [1.0, 1.0]
    assert mixed.values.tolist() == [0.0, 0.0]


def test_monotonicity_agrees_with_quantus_once_its_insertion_is_fixed() -> None:
    """Quantus' batched Monotonicity refills the all-baseline image with the baseline, so it
    returns True everywhere; with a perturb_func that inserts x (Arya et al.'s definition) it
    equals faithmap's verdict on the curve after the first insertion."""
    quantus = _quantus()
    weights = _normal(16, seed=0).abs()
    weights[0] = -1.0  # pixel 0 lowers the score where it is not 0: odd images
    net = Linear(weights.tolist())
    x, maps = _seeded(12, 1, 4, 4, seed=1), _normal(12, 1, 4, 4, seed=2)
    x[::2, 0, 0, 0] = 0.0
    targets = np.zeros(12, dtype=int)
    xs = x.numpy()

    def insert(arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        rows = np.arange(arr.shape[0])[:, None]
        out = arr.copy()
        out[rows, indices] = xs.reshape(xs.shape[0], -1)[rows, indices]
        return out

    data = {"model": net, "x_batch": xs, "y_batch": targets, "a_batch": maps.numpy()}
    for steps, per_step in ((None, 1), (4, 4)):
        ours = monotonicity(net, x, maps, target=0, steps=steps)
        fixed = quantus.Monotonicity(
            perturb_func=insert,
            perturb_baseline=0.0,
            features_in_step=per_step,
            disable_warnings=True,
        )
        theirs = torch.tensor(_run_quantus(fixed, **data), dtype=torch.bool)
        assert torch.equal((ours.curve[:, 1:].diff(dim=1) >= 0).all(1), theirs)
        if steps is None:
            assert ours.values.tolist() == [1.0, 0.0] * 6
    as_shipped = quantus.Monotonicity(perturb_baseline=0.0, disable_warnings=True)
    assert all(_run_quantus(as_shipped, **data))


# ------------------------------------------------------ monotonicity correlation


def test_monotonicity_correlation_hand_values() -> None:
    """Linear model, fill 0: removing pixel i changes the logit by -w_i x_i, so var = (w_i x_i)^2;
    the map w * x gives Spearman 1, a map ranked the other way round -1."""
    weights = [1.0, -2.0, 3.0, 0.5]
    x = torch.tensor([1.0, 2.0, 1.5, 4.0]).view(1, 1, 2, 2)
    contribution = torch.tensor(weights).view(1, 1, 2, 2) * x  # 1, -4, 4.5, 2
    reversed_map = torch.tensor([4.0, 2.0, 1.0, 3.0]).view(1, 1, 2, 2)  # |c| order reversed
    maps = torch.cat([contribution, reversed_map])
    result = monotonicity_correlation(
        Linear(weights), x.repeat(2, 1, 1, 1), maps, target=0, activation="logits"
    )
    torch.testing.assert_close(
        result.values.double(), torch.tensor([1.0, -1.0], dtype=torch.float64)
    )


@pytest.mark.parametrize(("steps", "per_step"), [(None, 1), (4, 4)])
@pytest.mark.parametrize("softmax", [True, False])
def test_monotonicity_correlation_agrees_with_quantus(
    steps: int | None, per_step: int, softmax: bool
) -> None:
    quantus = _quantus()
    torch.manual_seed(3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Tanh(), nn.Linear(4, 3)).eval()
    x, maps = _seeded(8, 1, 4, 4, seed=4), _normal(8, 1, 4, 4, seed=5)
    targets = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    ours = monotonicity_correlation(
        net,
        x,
        maps,
        target=torch.from_numpy(targets),
        steps=steps,
        activation="softmax" if softmax else "logits",
    )
    metric = quantus.MonotonicityCorrelation(
        perturb_baseline=0.0, nr_samples=1, features_in_step=per_step, disable_warnings=True
    )
    theirs = _run_quantus(
        metric,
        model=net,
        x_batch=x.numpy(),
        y_batch=targets,
        a_batch=maps.numpy(),
        softmax=softmax,
    )
    expected = torch.tensor(np.asarray(theirs, dtype=float))
    torch.testing.assert_close(ours.values.double(), expected, rtol=0, atol=1e-9)


def test_monotonicity_correlation_draws_need_a_random_fill() -> None:
    x, maps = _seeded(2, 3, 8, 8, seed=6), _normal(2, 1, 8, 8, seed=7)
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 2))
    with pytest.raises(InvalidParameterError, match="n_samples"):
        monotonicity_correlation(net, x, maps, target=0, n_samples=3, fill=0.0)
    noisy = monotonicity_correlation(net, x, maps, target=0, steps=8, n_samples=3, fill="noise")
    assert noisy.cost.forward == 2 * (8 * 3 + 1)
    assert bool(noisy.values.isfinite().all())


# ----------------------------------------------------------- IROF and Selectivity


def test_irof_and_selectivity_hand_values() -> None:
    """w = (3, 3, 1, 1), b = 2 on ones: f = 10; left half removed 4, both 2; right half 8.

    Left half first (the right order): curve 10, 4, 2; relative 1, .4, .2 -> area .5.
    Right half first: curve 10, 8, 2; relative 1, .8, .2 -> area .7.
    """
    net = Linear([3, 3, 1, 1], bias=2.0)
    x = ONES_1X4.repeat(2, 1, 1, 1)
    maps = torch.tensor([[2.0, 2.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]]).view(2, 1, 1, 4)
    regions = HALVES.repeat(2, 1, 1)
    common: dict[str, Any] = {"target": 0, "unit": regions, "fill": 0.0, "activation": "logits"}
    removed = irof(net, x, maps, **common)
    assert removed.curve.tolist() == [[10.0, 4.0, 2.0], [10.0, 8.0, 2.0]]
    torch.testing.assert_close(removed.values, torch.tensor([0.5, 0.3]))
    chosen = selectivity(net, x, maps, **common)
    torch.testing.assert_close(chosen.values, torch.tensor([5.0, 7.0]))
    assert removed.regions.tolist() == [2, 2]


@pytest.mark.parametrize("patch", [4, 8])
def test_selectivity_curve_agrees_with_quantus(patch: int) -> None:
    """Quantus' Selectivity curve is faithmap's without its first point (sides multiple of the
    patch, same fill)."""
    quantus = _quantus()
    torch.manual_seed(8)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3)).eval()
    x, maps = _seeded(4, 3, 16, 16, seed=9), _normal(4, 1, 16, 16, seed=10)
    targets = np.array([0, 1, 2, 0])
    ours = selectivity(net, x, maps, target=torch.from_numpy(targets), unit=f"patches:{patch}")
    metric = quantus.Selectivity(patch_size=patch, perturb_baseline=0.0, disable_warnings=True)
    theirs = _run_quantus(
        metric, model=net, x_batch=x.numpy(), y_batch=targets, a_batch=maps.numpy()
    )
    expected = torch.tensor(np.asarray(theirs, dtype=float))
    torch.testing.assert_close(ours.curve[:, 1:].double(), expected, rtol=1e-6, atol=1e-7)


def test_irof_agrees_with_quantus_by_the_documented_relation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Quantus' IROF = R * value + (1 + f(x_1) / f(x)) / 2 on the same SLIC segments and a
    constant fill. Quantus 0.6.0 calls np.trapz (gone in NumPy 2: patched to np.trapezoid) and
    fails on multi-channel images (its mask keeps one channel), so the images are grey; each is
    scored alone, as its "mean" fill and its padding of shorter curves mix the batch."""
    quantus = _quantus()
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    torch.manual_seed(11)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 3)).eval()
    x, maps = _seeded(4, 1, 16, 16, seed=12), _normal(4, 1, 16, 16, seed=13)
    targets = np.array([0, 1, 2, 0])
    xs = x.numpy()
    segments = np.stack(
        [slic(np.moveaxis(image, 0, -1).astype("double"), start_label=0) for image in xs]
    )
    ours = irof(
        net,
        x,
        maps,
        target=torch.from_numpy(targets),
        unit=torch.from_numpy(segments).long(),
        fill=0.0,
    )
    theirs = []
    for i in range(4):
        metric = quantus.IROF(perturb_baseline=0.0, return_aggregate=False, disable_warnings=True)
        data = {
            "model": net,
            "x_batch": xs[i : i + 1],
            "y_batch": targets[i : i + 1],
            "a_batch": maps.numpy()[i : i + 1],
        }
        theirs.append(float(_run_quantus(metric, **data)[0]))
    first = ours.curve[:, 1] / ours.curve[:, 0]
    related = ours.regions * ours.values + (1 + first) / 2
    torch.testing.assert_close(
        related.double(), torch.tensor(theirs, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )


# -------------------------------------------------------------------- Sensitivity-n


def test_sensitivity_n_hand_values() -> None:
    """Linear model, fill 0: removing S drops the logit by sum(w x over S), so the map w * x
    correlates 1 at every size (Ancona et al.'s linear case) and -w * x correlates -1."""
    weights = _normal(16, seed=14).tolist()
    x = _seeded(1, 1, 4, 4, seed=15)
    exact = torch.tensor(weights).view(1, 1, 4, 4) * x
    maps = torch.cat([exact, -exact])
    result = sensitivity_n(
        Linear(weights),
        x.repeat(2, 1, 1, 1),
        maps,
        target=0,
        fractions=(0.25, 0.5, 0.75),
        n_samples=12,
    )
    expected = torch.tensor([[1.0] * 3, [-1.0] * 3], dtype=torch.float64)
    torch.testing.assert_close(result.correlations.double(), expected)
    assert result.sizes.tolist() == [[4, 8, 12]] * 2
    assert result.cost.forward == 2 * (3 * 12 + 1)


def test_sensitivity_n_differs_from_quantus_as_documented() -> None:
    """Quantus' SensitivityN gives one number per step, the across-image Pearson of the drop
    after removing the top-n features with the n-th feature's attribution alone: for step 1,
    of (w x at each image's top pixel) with (that pixel's map value). On the linear model with
    the exact map faithmap scores 1 everywhere; Quantus' step-2 value is not 1."""
    quantus = _quantus()
    weights = _normal(16, seed=16).abs().tolist()
    net = Linear(weights)
    x = _seeded(6, 1, 4, 4, seed=17)
    exact = torch.tensor(weights).view(1, 1, 4, 4) * x
    metric = quantus.SensitivityN(
        n_max_percentage=0.5,
        normalise=False,
        perturb_baseline=0.0,
        return_aggregate=False,
        disable_warnings=True,
    )
    theirs = _run_quantus(
        metric,
        model=net,
        x_batch=x.numpy(),
        y_batch=np.zeros(6, dtype=int),
        a_batch=exact.numpy(),
        softmax=False,
    )
    assert len(theirs) == 8  # one per step (half of 16 features), not one per image
    contributions = exact.flatten(1).sort(1, descending=True).values
    drop_2 = contributions[:, :2].sum(1).double().numpy()
    step_2 = contributions[:, 1].double().numpy()
    assert theirs[1] == pytest.approx(float(np.corrcoef(drop_2, step_2)[0, 1]), abs=1e-6)
    assert abs(theirs[1] - 1) > 1e-3
    ours = sensitivity_n(net, x, exact, target=0, fractions=(0.125, 0.25), n_samples=8)
    torch.testing.assert_close(ours.values.double(), torch.ones(6, dtype=torch.float64))


# --------------------------------------------------------- average drop / increase


def test_average_drop_and_increase_hand_values() -> None:
    """w = (2, 2, -1, -1), b = 3 on ones: Y = 5. The map w (min-max: 1, 1, 0, 0) keeps the
    left half: O = 7 (drop 0, increase 1); the reversed map keeps the right: O = 1 (drop 0.8)."""
    net = Linear([2, 2, -1, -1], bias=3.0)
    x = ONES_1X4.repeat(2, 1, 1, 1)
    maps = torch.tensor([[2.0, 2.0, -1.0, -1.0], [-1.0, -1.0, 2.0, 2.0]]).view(2, 1, 1, 4)
    drop = average_drop(net, x, maps, target=0, activation="logits")
    rise = average_increase(net, x, maps, target=0, activation="logits")
    torch.testing.assert_close(drop.values, torch.tensor([0.0, 0.8]))
    assert rise.values.tolist() == [1.0, 0.0]
    assert drop.cost.forward == 4


def test_average_drop_is_nan_for_a_constant_map() -> None:
    net = Linear([1.0, 1.0, 1.0, 1.0], bias=1.0)
    result = average_drop(net, ONES_1X4, torch.full((1, 1, 1, 4), 0.3), target=0)
    assert bool(result.values.isnan().all())


# -------------------------------------------------------------------- completeness


def test_completeness_hand_values() -> None:
    """Linear model, baseline 0: w * x sums to f(x) - f(0) (gap 0); the zero map's gap is w . x."""
    weights = [2.0, -1.0, 3.0, 0.5]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).repeat(2, 1, 1, 1)
    exact = torch.tensor(weights).view(1, 1, 1, 4) * x[:1]
    maps = torch.cat([exact, torch.zeros_like(exact)])
    result = completeness(Linear(weights, bias=5.0), x, maps, target=0)
    assert result.values.tolist() == [0.0, 11.0]
    assert result.output_change.tolist() == [11.0, 11.0]


def test_completeness_relates_to_quantus_boolean() -> None:
    """Quantus returns sum(a) == f(x) - f(baseline): True where faithmap's gap is 0 (exact
    integer arithmetic here, normalise=False); its default normalise=True fails the same map."""
    quantus = _quantus()
    weights = [2.0, -1.0, 3.0, 1.0]
    net = Linear(weights)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 0.0, 1.0, 1.0]]).view(2, 1, 1, 4)
    exact = torch.tensor(weights).view(1, 1, 1, 4) * x
    off = exact + torch.tensor([0.0, 0.0, 0.0, 1.0]).view(1, 1, 1, 4)
    maps = torch.cat([exact, off])
    inputs = torch.cat([x, x])
    ours = completeness(net, inputs, maps, target=0)
    data = {
        "model": net,
        "x_batch": inputs.numpy(),
        "y_batch": np.zeros(4, dtype=int),
        "a_batch": maps.numpy(),
    }
    raw = quantus.Completeness(normalise=False, perturb_baseline=0.0, disable_warnings=True)
    data["channel_first"] = True
    assert _run_quantus(raw, **data) == (ours.values == 0).tolist() == [True, True, False, False]
    normalised = quantus.Completeness(perturb_baseline=0.0, disable_warnings=True)
    assert not any(_run_quantus(normalised, **data))


# ------------------------------------------------------------------ batch invariance

LIGHT: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "monotonicity": (monotonicity, {"steps": 8}),
    "monotonicity_correlation": (monotonicity_correlation, {"steps": 8}),
    "irof": (irof, {"unit": "slic:16"}),
    "selectivity": (selectivity, {"unit": "patches:4"}),
    "sensitivity_n": (sensitivity_n, {"fractions": (0.1, 0.3), "n_samples": 6}),
    "average_drop": (average_drop, {}),
    "average_increase": (average_increase, {}),
    "completeness": (completeness, {}),
}


def _batch_data() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(18)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 3)
    ).eval()
    return net, _seeded(3, 3, 16, 16, seed=19), _normal(3, 1, 16, 16, seed=20)


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_model_batch_size_does_not_change_values(name: str) -> None:
    metric, params = LIGHT[name]
    net, x, maps = _batch_data()
    one = metric(Model(net, batch_size=1), x, maps, **params).values
    every = metric(Model(net, batch_size=64), x, maps, **params).values
    torch.testing.assert_close(one, every, equal_nan=True, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(LIGHT) - {"sensitivity_n"}))
def test_each_sample_scores_as_it_would_alone(name: str) -> None:
    """Sensitivity-n draws its subsets from (seed, sample index), so it is left out here."""
    metric, params = LIGHT[name]
    net, x, maps = _batch_data()
    together = metric(net, x, maps, **params).values
    alone = torch.cat(
        [metric(net, x[i : i + 1], maps[i : i + 1], **params).values for i in range(3)]
    )
    torch.testing.assert_close(together, alone, equal_nan=True, rtol=1e-5, atol=1e-6)
