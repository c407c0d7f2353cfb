"""Feature ablation: the oracle on a sum model, Captum's FeatureAblation, tabular columns."""

from __future__ import annotations

import pytest
import torch
from captum.attr import FeatureAblation
from torch import nn

import faithmap
from faithmap.core.regions import make_regions
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin


class Sum(nn.Module):
    """Score of class 0: the sum of every input value; class 1: minus that."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.flatten(1).sum(1)
        return torch.stack([total, -total], 1)


def test_on_a_sum_model_a_region_gets_its_own_sum_minus_the_fill() -> None:
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64)
    labels = make_regions("patches:4", x).labels
    result = faithmap.explain(
        Sum(), x, method="feature_ablation", regions="patches:4", fill=0.25, target=0
    )
    expected = torch.zeros(3, 4, dtype=torch.float64)
    expected.scatter_add_(1, labels.flatten(1), (x - 0.25).sum(1).flatten(1))
    painted = expected.gather(1, labels.flatten(1)).view(3, 1, 8, 8)
    torch.testing.assert_close(result.attributions, painted)


@pytest.mark.parametrize("regions", ["patches:16", "slic:12"])
def test_identical_to_captum_on_the_same_feature_mask(regions: str) -> None:
    cnn = load_builtin("cnn")
    data = make_shapes(3, seed=5)
    x, labels = data.images, data.labels
    ours = faithmap.explain(cnn, x, method="feature_ablation", regions=regions, target=labels)
    mask = make_regions(regions, x).labels
    theirs = FeatureAblation(cnn).attribute(
        x,
        baselines=0.0,
        target=labels,
        feature_mask=mask.unsqueeze(1).expand_as(x),
        perturbations_per_eval=16,
    )
    for channel in range(3):
        torch.testing.assert_close(ours.attributions[:, 0], theirs[:, channel], atol=1e-5, rtol=0)


def test_tabular_columns_are_the_features() -> None:
    weights = torch.tensor([[1.0, -2.0, 0.5, 3.0]], dtype=torch.float64)
    net = nn.Linear(4, 1, bias=True).double()
    with torch.no_grad():
        net.weight.copy_(weights)
    x = torch.randn(5, 4, dtype=torch.float64)
    result = faithmap.explain(net, x, method="feature_ablation", target=0, fill=1.0)
    torch.testing.assert_close(result.attributions, (x - 1.0) * weights)


def test_image_fills_are_refused_for_tabular_rows() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match="baseline as a number"):
        faithmap.explain(nn.Linear(4, 2), torch.randn(3, 4), method="feature_ablation", fill="mean")
