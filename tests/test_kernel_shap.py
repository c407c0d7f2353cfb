"""KernelSHAP: exact Shapley values by brute force, the linear closed form, Captum and shap."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import cast

import numpy as np
import pytest
import torch
from captum.attr import KernelShap as CaptumKernelShap
from torch import nn

import faithmap
from faithmap.methods.kernel_shap import KernelShap, paired_samples

LABELS = torch.arange(36).view(6, 6) % 6 // 2 + 3 * (torch.arange(36).view(6, 6) // 18)
"""Six regions of a 6x6 image: three column bands in the top half, three in the bottom."""


def nonlinear_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(72, 16), nn.Tanh(), nn.Linear(16, 3), nn.Softplus()
    ).double()


def region_game(
    net: nn.Module, x: torch.Tensor, target: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The value of a coalition ``(S, 6)`` for each input: the score with the rest set to 0."""

    def value(keep: torch.Tensor) -> torch.Tensor:
        masks = keep.double()[:, LABELS].unsqueeze(1)  # (S, 1, 6, 6)
        with torch.no_grad():
            scores: torch.Tensor = net((x[:, None] * masks).flatten(0, 1))
            return scores[:, target].view(x.shape[0], -1)

    return value


def brute_force_shapley(
    value: Callable[[torch.Tensor], torch.Tensor], players: int
) -> torch.Tensor:
    """Shapley values from the definition: a weighted sum over every coalition."""
    total: torch.Tensor | int = 0
    for player in range(players):
        others = [p for p in range(players) if p != player]
        for size in range(players):
            weight: float = math.factorial(size) * math.factorial(players - size - 1)
            weight /= math.factorial(players)
            for members in itertools.combinations(others, size):
                without = torch.zeros(1, players)
                without[0, list(members)] = 1
                with_player = without.clone()
                with_player[0, player] = 1
                gain = value(with_player) - value(without)
                onehot = torch.zeros(players, dtype=torch.float64)
                onehot[player] = 1
                total = total + weight * gain * onehot
    assert isinstance(total, torch.Tensor)
    return total


def test_exact_enumeration_equals_brute_force_shapley_values() -> None:
    net = nonlinear_net()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    result = faithmap.explain(net, x, method="kernel_shap", regions=LABELS, target=1, exact=True)
    expected = brute_force_shapley(region_game(net, x, 1), 6)
    assert result.cost.forward == 3 * 2**6
    torch.testing.assert_close(result.attributions[:, 0, 0, ::2], expected[:, :3])
    torch.testing.assert_close(result.attributions[:, 0, 5, ::2], expected[:, 3:])


def test_on_a_linear_model_it_is_weight_times_difference() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(72, 2)).double()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    for exact, n_samples in [(True, 64), (False, 40)]:
        result = faithmap.explain(
            net,
            x,
            method="kernel_shap",
            regions=LABELS,
            target=0,
            fill=0.5,
            exact=exact,
            n_samples=n_samples,
        )
        contribution = ((x - 0.5) * cast(nn.Linear, net[1]).weight[0].view(2, 6, 6)).sum(1)
        per_region = torch.zeros(2, 6, dtype=torch.float64)
        per_region.scatter_add_(1, LABELS.flatten().expand(2, 36), contribution.flatten(1))
        torch.testing.assert_close(result.attributions[:, 0], per_region[:, LABELS])


def test_paired_samples_come_with_their_complements() -> None:
    drawn = paired_samples(7, 50, torch.Generator().manual_seed(0))
    assert drawn.shape == (100, 7)
    torch.testing.assert_close(drawn[0::2] + drawn[1::2], torch.ones(50, 7, dtype=torch.float64))
    sizes = drawn.sum(1)
    assert bool(((sizes >= 1) & (sizes <= 6)).all())


def test_agrees_with_captum_given_the_same_coalitions() -> None:
    net = nonlinear_net()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    method = KernelShap(regions=LABELS, n_samples=40, exact=False, activation="logits")
    ours = method.explain(net, x, target=2).attributions[:, 0]
    distinct, repeats = method.coalitions(6)
    coalitions = distinct.repeat_interleave(repeats.long(), dim=0)  # each as often as drawn

    class SameCoalitions(CaptumKernelShap):  # type: ignore[misc]
        def kernel_shap_perturb_generator(
            self, original_inp: object, **kwargs: object
        ) -> Iterator[torch.Tensor]:
            yield torch.ones(1, 6, dtype=torch.long)
            yield torch.zeros(1, 6, dtype=torch.long)
            for row in coalitions.long():
                yield row[None]

    for i in range(2):
        theirs = SameCoalitions(net).attribute(
            x[i : i + 1],
            baselines=0.0,
            target=2,
            feature_mask=LABELS.expand(1, 2, 6, 6),
            n_samples=2 + coalitions.shape[0],
            perturbations_per_eval=64,
        )
        # Captum approximates the efficiency constraint with a weight of 1e6 on the endpoints
        torch.testing.assert_close(ours[i].float(), theirs[0, 0], atol=1e-4, rtol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_agrees_with_shap_kernel_explainer_on_full_enumeration() -> None:
    import shap

    net = nonlinear_net()
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64)
    ours = faithmap.explain(net, x, method="kernel_shap", regions=LABELS, target=0, exact=True)
    value = region_game(net, x, 0)
    explainer = shap.KernelExplainer(
        lambda z: value(torch.from_numpy(z))[0].numpy(), np.zeros((1, 6))
    )
    theirs = explainer.shap_values(np.ones((1, 6)), nsamples=2**6, silent=True)
    np.testing.assert_allclose(ours.attributions[0, 0, 0, ::2].numpy(), theirs[0, :3], atol=1e-8)
    np.testing.assert_allclose(ours.attributions[0, 0, 5, ::2].numpy(), theirs[0, 3:], atol=1e-8)


def test_paired_sampling_error_falls_with_samples() -> None:
    net = nonlinear_net()
    x = torch.rand(2, 2, 6, 6, dtype=torch.float64)
    exact = faithmap.explain(net, x, method="kernel_shap", regions=LABELS, target=1, exact=True)
    errors = []
    for n_samples in (12, 400):
        sampled = faithmap.explain(
            net,
            x,
            method="kernel_shap",
            regions=LABELS,
            target=1,
            exact=False,
            n_samples=n_samples,
        )
        errors.append(float((sampled.attributions - exact.attributions).abs().max()))
    assert errors[1] < errors[0] / 2


def test_exact_refuses_too_many_features() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match="at most 14 regions"):
        faithmap.explain(
            nn.Flatten(),
            torch.rand(1, 1, 8, 8),
            method="kernel_shap",
            regions="pixels",
            exact=True,
            target=0,
        )
