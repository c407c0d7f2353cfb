"""LIME: a linear model's region weights recovered; the surrogate equals scikit-learn's Ridge."""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from sklearn.linear_model import Ridge
from torch import nn

import faithmap
from faithmap.core.regions import make_regions
from faithmap.methods.coalitions import weighted_least_squares
from faithmap.methods.lime import cosine_kernel, lime_coalitions


def test_on_a_linear_model_it_recovers_the_region_weights() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).double()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    result = faithmap.explain(
        net,
        x,
        method="lime",
        regions="patches:4",
        target=2,
        activation="logits",
        ridge=0.0,
        n_samples=64,
    )
    labels = make_regions("patches:4", x).labels
    contribution = (x * cast(nn.Linear, net[1]).weight[2].view(3, 8, 8)).sum(1).flatten(1)
    per_region = torch.zeros(4, 4, dtype=torch.float64).scatter_add_(
        1, labels.flatten(1), contribution
    )
    painted = per_region.gather(1, labels.flatten(1)).view(4, 1, 8, 8)
    torch.testing.assert_close(result.attributions, painted)


def test_the_batched_surrogate_is_scikit_learns_weighted_ridge() -> None:
    generator = torch.Generator().manual_seed(3)
    coalitions = lime_coalitions(9, 200, generator)
    weights = cosine_kernel(coalitions, 0.25)
    scores = torch.randn(3, 200, generator=generator, dtype=torch.float64)
    ours, intercept = weighted_least_squares(coalitions, weights, scores, ridge=1.0)
    for i in range(3):
        ridge = Ridge(alpha=1.0).fit(coalitions, scores[i], sample_weight=weights)
        torch.testing.assert_close(ours[i], torch.from_numpy(ridge.coef_))
        torch.testing.assert_close(float(intercept[i]), float(ridge.intercept_))


def test_the_kernel_is_lime_images_at_the_same_width() -> None:
    from lime.lime_image import LimeImageExplainer
    from sklearn.metrics import pairwise_distances

    coalitions = lime_coalitions(12, 300, torch.Generator().manual_seed(1))
    data = coalitions.numpy().astype(float)
    distances = pairwise_distances(data, np.ones((1, 12)), metric="cosine").ravel()
    for width in (0.25, 0.5, 1.0):
        expected = LimeImageExplainer(kernel_width=width).base.kernel_fn(distances)
        got = cosine_kernel(coalitions, width).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)


def test_the_kernel_weights_the_input_itself_highest() -> None:
    coalitions = lime_coalitions(5, 50, torch.Generator().manual_seed(0))
    weights = cosine_kernel(coalitions, 0.25)
    assert coalitions[0].sum() == 5 and weights[0] == 1.0
    assert bool((weights[1:] <= 1.0).all())
