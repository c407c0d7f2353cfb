"""Complexity metrics: hand-computed values, independent formulas, Quantus, edge cases."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import scipy.stats
import torch

from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.errors import InvalidParameterError
from faithmap.metrics import METRICS, complexity, effective_complexity, sparseness

COMPLEXITY = ("sparseness", "complexity", "effective_complexity")


def one_hot_and_flat(n: int = 64) -> torch.Tensor:
    maps = torch.zeros(2, 1, 8, n // 8)
    maps[0, 0, 3, 2] = -7.0  # all mass on one pixel (sign ignored)
    maps[1] = 0.25  # spread evenly
    return maps


def test_gini_by_hand() -> None:
    values = torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    # [1, 2, 3, 4]: weights 2i - n - 1 = -3, -1, 1, 3 -> (-3 - 2 + 3 + 12) / (4 * 10) = 0.25.
    torch.testing.assert_close(sparseness(values).values, torch.tensor([0.75, 0.25, 0.0]))


def test_gini_equals_the_mean_absolute_difference_form() -> None:
    values = torch.randn(5, 1, 6, 7, generator=torch.Generator().manual_seed(0))
    a = values.flatten(1).abs().double()
    n = a.shape[1]
    expected = (a[:, :, None] - a[:, None, :]).abs().sum((1, 2)) / (2 * n * a.sum(1))
    torch.testing.assert_close(sparseness(values).values.double(), expected, rtol=1e-5, atol=1e-6)


def test_entropy_matches_scipy() -> None:
    values = torch.randn(4, 1, 5, 9, generator=torch.Generator().manual_seed(1))
    expected = [scipy.stats.entropy(row.abs().numpy()) for row in values.flatten(1)]
    torch.testing.assert_close(
        complexity(values).values.double(),
        torch.tensor(expected, dtype=torch.float64),
        rtol=1e-5,
        atol=1e-6,
    )


def test_effective_complexity_by_hand() -> None:
    values = torch.tensor([[0.0, 1e-6, -0.5, 2.0, 1e-5], [3.0, 3.0, 3.0, 3.0, -3.0]])
    assert effective_complexity(values).values.tolist() == [2.0, 5.0]
    assert effective_complexity(values, eps=0.0).values.tolist() == [4.0, 5.0]
    assert effective_complexity(values, eps=2.5).values.tolist() == [0.0, 5.0]


def test_perfect_and_worst_maps() -> None:
    maps = one_hot_and_flat()
    n = 64
    torch.testing.assert_close(sparseness(maps).values, torch.tensor([(n - 1) / n, 0.0]))
    torch.testing.assert_close(complexity(maps).values, torch.tensor([0.0, math.log(n)]))
    assert effective_complexity(maps).values.tolist() == [1.0, float(n)]
    assert sparseness(maps).higher_is_better
    assert not complexity(maps).higher_is_better
    assert not effective_complexity(maps).higher_is_better


def test_an_all_zero_map_is_undefined_for_gini_and_entropy() -> None:
    zero = torch.zeros(1, 1, 4, 4)
    assert math.isnan(sparseness(zero).values[0])
    assert math.isnan(complexity(zero).values[0])
    assert effective_complexity(zero).values.tolist() == [0.0]
    assert sparseness(zero).choices["zero_map"] == "nan"


def test_sign_and_scale_invariance() -> None:
    values = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    for metric in (sparseness, complexity):
        base = metric(values).values
        torch.testing.assert_close(metric(-3.0 * values).values, base)


@pytest.mark.parametrize("name", COMPLEXITY)
def test_batch_size_invariance_explanations_and_no_model_pass(name: str) -> None:
    values = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    explanation = Explanation(
        attributions=values, method="test", config={}, target=None, cost=Cost()
    )
    whole = METRICS[name].run(None, torch.zeros(5, 3, 8, 8), explanation)
    parts = torch.cat(
        [
            METRICS[name].run(None, torch.zeros(1, 3, 8, 8), values[i : i + 1]).values
            for i in range(5)
        ]
    )
    torch.testing.assert_close(whole.values, parts)
    assert whole.cost.passes == 0
    assert METRICS[name].arguments == ("explanation",)


def test_agrees_with_quantus() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import quantus
    values = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    data: dict[str, Any] = {
        "model": None,
        "x_batch": torch.rand(4, 1, 8, 8).numpy(),
        "y_batch": np.zeros(4, dtype=int),
        "a_batch": values.numpy(),
    }
    settings: dict[str, Any] = {"normalise": False, "abs": True, "disable_warnings": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gini = quantus.Sparseness(**settings)(**data)
        entropy = quantus.Complexity(**settings)(**data)
        count = quantus.EffectiveComplexity(**settings)(**data)
    # Quantus adds 1e-7 to every value before the Gini index; the difference is below 1e-5 here.
    for ours, theirs in ((sparseness, gini), (complexity, entropy), (effective_complexity, count)):
        expected = torch.tensor(np.asarray(theirs, dtype=float))
        torch.testing.assert_close(ours(values).values.double(), expected, rtol=1e-5, atol=1e-5)


def test_bad_eps_raises() -> None:
    with pytest.raises(InvalidParameterError, match="'eps' parameter of effective_complexity"):
        effective_complexity(torch.ones(1, 4), eps=-1.0)
