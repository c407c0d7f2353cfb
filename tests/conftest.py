"""Shared fixtures: small deterministic models and inputs, and light method settings."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
from torch import nn

LIGHT_PARAMS: dict[str, dict[str, Any]] = {
    "extremal": {"iterations": 3, "grid": 4},
    "integrated_gradients": {"steps": 8},
    "rise": {"n_masks": 64},
    "occlusion": {"window": 4, "stride": 4},
    "feature_ablation": {"regions": "patches:4"},
    "kernel_shap": {"regions": "patches:4", "n_samples": 64},
    "lime": {"regions": "patches:8", "n_samples": 32},
    "sobol": {"regions": "patches:8", "n_design": 8, "activation": "logits"},
    "hsic": {"regions": "patches:4", "n_design": 32},
    "shapley_sampling": {"regions": "patches:8", "n_permutations": 4},
    "owen": {"regions": "patches:8", "max_passes": 64},
    "smdl": {"regions": "patches:8", "search": "stochastic", "effectiveness": 1.0},
    "lima": {"regions": "patches:8", "pending": 2},
    "vps": {"regions": "patches:8"},
    "d_rise": {"n_masks": 64, "grid": 4},
    "lrp": {"composite": "epsilon_plus"},
    "smoothgrad": {"n_samples": 4},
    "gradient_shap": {
        "n_samples": 4,
        "background": torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)),
    },
    "deep_shap": {
        "background": torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3)),
    },
}
"""Settings that keep every method fast on 16x16 test images."""


@pytest.fixture(autouse=True)
def _batch_size_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets an empty batch-size cache folder: none writes to the user's real cache."""
    folder = tmp_path_factory.mktemp("faithmap-cache")
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", str(folder))


def light_params(name: str) -> dict[str, Any]:
    """Fast settings for a registered method (empty: its defaults)."""
    return dict(LIGHT_PARAMS.get(name, {}))


class TinyNet(nn.Module):
    """A small CNN with batch norm and dropout, so eval/train mode changes its output."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        logits: torch.Tensor = self.head(self.dropout(pooled))
        return logits


class RegionSum(nn.Module):
    """Class 0's probability is linear in the image: the weighted share of its 4 x 4 patches
    kept (the subset searches' test model, whose marginal gains are known exactly)."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cells = nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1)
        kept = (cells * self.weights).sum(1, keepdim=True) / self.weights.sum()
        return torch.cat([kept, 1.0 - kept], 1)


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    net = TinyNet()
    norm = cast(nn.BatchNorm2d, net.features[1])
    assert norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        norm.running_mean.uniform_(-0.1, 0.1)
        norm.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
