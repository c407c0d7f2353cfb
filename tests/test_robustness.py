"""Robustness metrics: closed forms on a linear model, and agreement with Captum."""

from __future__ import annotations

import pytest
import torch
from captum.metrics import sensitivity_max as captum_sensitivity_max
from torch import nn

import faithmap
from faithmap import Model
from faithmap.errors import ConstantMapWarning
from faithmap.metrics import avg_sensitivity, input_perturbations, local_lipschitz, max_sensitivity


class Linear(nn.Module):
    """Logits (w . x, -w . x) of 1-channel 8x8 images: its gradient is w everywhere."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        weights = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
        self.weights = nn.Parameter(scale * weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weights).flatten(1).sum(1)
        return torch.stack([score, -score], dim=1)


IMAGES = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5


def integrated_gradients(net: nn.Module) -> faithmap.Explanation:
    # Exact on a linear model with a zero baseline: phi(x) = w * x.
    return faithmap.explain(net, IMAGES, method="integrated_gradients", steps=2, target=0)


def test_a_constant_explanation_has_zero_sensitivity() -> None:
    net = Linear()
    saliency = faithmap.explain(net, IMAGES, method="saliency", target=0)
    for metric in (max_sensitivity, avg_sensitivity):
        result = metric(net, IMAGES, saliency, n_samples=4)
        torch.testing.assert_close(result.values, torch.zeros(3, dtype=torch.float64))
        assert not result.higher_is_better and result.choices["method"] == "saliency"
    lipschitz = local_lipschitz(net, IMAGES, saliency, n_samples=4)
    torch.testing.assert_close(lipschitz.values, torch.zeros(3, dtype=torch.float64))


def test_sensitivity_of_integrated_gradients_on_a_linear_model() -> None:
    net = Linear()
    weights = net.weights.detach()
    shifts = input_perturbations(IMAGES, 5, 0.1, seed=2, uniform=True)
    ratios = (weights * shifts).flatten(2).norm(dim=2) / (weights * IMAGES).flatten(1).norm(
        dim=1, keepdim=True
    )
    explanation = integrated_gradients(net)
    worst = max_sensitivity(net, IMAGES, explanation, n_samples=5, radius=0.1, seed=2)
    mean = avg_sensitivity(net, IMAGES, explanation, n_samples=5, radius=0.1, seed=2)
    torch.testing.assert_close(worst.values.float(), ratios.amax(1))
    torch.testing.assert_close(mean.values.float(), ratios.mean(1))
    # 5 re-explanations of 2 gradient steps per image
    assert worst.cost.backward == 3 * 5 * 2


def test_lipschitz_of_integrated_gradients_on_a_linear_model() -> None:
    net = Linear()
    weights = net.weights.detach()
    shifts = input_perturbations(IMAGES, 6, 0.1, seed=0, uniform=False)
    expected = (weights * shifts).flatten(2).norm(dim=2) / shifts.flatten(2).norm(dim=2)
    result = local_lipschitz(net, IMAGES, integrated_gradients(net), n_samples=6)
    torch.testing.assert_close(result.values.float(), expected.amax(1))
    # normalising by the largest value makes the estimate blind to the model's scale
    big = Linear(scale=100.0)
    raw = local_lipschitz(big, IMAGES, integrated_gradients(big), n_samples=6)
    # attributions are float32, so compare at float32 precision
    torch.testing.assert_close(raw.values.float(), 100 * result.values.float())
    one = local_lipschitz(net, IMAGES, integrated_gradients(net), n_samples=6, normalize=True)
    hundred = local_lipschitz(big, IMAGES, integrated_gradients(big), n_samples=6, normalize=True)
    torch.testing.assert_close(one.values.float(), hundred.values.float())


def test_a_model_that_ignores_its_input_scores_zero() -> None:
    net = Linear(scale=0.0)
    with pytest.warns(ConstantMapWarning, match="saliency returned an all-zero map"):
        saliency = faithmap.explain(net, IMAGES, method="saliency", target=0)
    assert not bool(saliency.attributions.any())
    result = max_sensitivity(net, IMAGES, saliency, n_samples=3)
    torch.testing.assert_close(result.values, torch.zeros(3, dtype=torch.float64))


def test_batch_size_seed_and_method_keyword(images: torch.Tensor, tiny_net: nn.Module) -> None:
    explanation = faithmap.explain(Model(tiny_net, batch_size=8), images, method="saliency")
    small = avg_sensitivity(Model(tiny_net, batch_size=3), images, explanation, n_samples=3)
    large = avg_sensitivity(Model(tiny_net, batch_size=64), images, explanation, n_samples=3)
    torch.testing.assert_close(small.values, large.values)
    other = avg_sensitivity(Model(tiny_net, batch_size=3), images, explanation, seed=1, n_samples=3)
    assert not torch.equal(small.values, other.values)
    bare = explanation.attributions
    with pytest.raises(faithmap.InvalidParameterError, match="bare tensor"):
        avg_sensitivity(tiny_net, images, bare)
    named = avg_sensitivity(
        Model(tiny_net, batch_size=3),
        images,
        bare,
        target=explanation.target,
        method=faithmap.get_method("saliency"),
        n_samples=3,
    )
    torch.testing.assert_close(named.values, small.values)


def test_max_sensitivity_agrees_with_captum(images: torch.Tensor, tiny_net: nn.Module) -> None:
    model = Model(tiny_net, batch_size=8)
    method = faithmap.get_method("saliency", reduce="none")
    targets = torch.tensor([0, 1, 2, 3, 1])
    explanation = method.explain(model, images, targets)
    shifts = input_perturbations(images, 4, 0.02, seed=0, uniform=True)

    def perturb(inputs: torch.Tensor, radius: float) -> torch.Tensor:
        return inputs + shifts.flatten(0, 1)

    def explain(inputs: torch.Tensor | tuple[torch.Tensor], target: torch.Tensor) -> object:
        # Captum passes (and expects back) a tuple for the clean inputs, runs under no_grad
        batch = inputs[0] if isinstance(inputs, tuple) else inputs
        with torch.enable_grad():
            attributions = method.explain(model, batch, target).attributions
        return (attributions,) if isinstance(inputs, tuple) else attributions

    expected = captum_sensitivity_max(
        explain, images, perturb_func=perturb, n_perturb_samples=4, target=targets
    )
    result = max_sensitivity(model, images, explanation, n_samples=4)
    torch.testing.assert_close(result.values.float(), expected, atol=1e-5, rtol=1e-5)


def test_the_explained_target_is_kept_under_noise(
    images: torch.Tensor, tiny_net: nn.Module
) -> None:
    # Regression (research pitfall): noise can flip the prediction; the explained class is kept.
    model = Model(tiny_net, batch_size=8)
    explanation = faithmap.explain(model, images, method="saliency", target=1)
    result = max_sensitivity(model, images, explanation, n_samples=2, radius=0.5)
    assert result.choices["target"] == "explained"
    assert result.target is not None
    assert torch.equal(result.target, torch.ones(5, dtype=torch.long))
    shifts = input_perturbations(images, 2, 0.5, seed=0, uniform=True)
    again = faithmap.explain(
        model, (images[:, None] + shifts).flatten(0, 1), method="saliency", target=1
    )
    change = (again.attributions.view(5, 2, -1) - explanation.attributions.view(5, 1, -1)).norm(
        dim=2
    ) / explanation.attributions.view(5, -1).norm(dim=1, keepdim=True)
    torch.testing.assert_close(result.values.float(), change.amax(1))
