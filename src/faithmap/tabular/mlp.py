"""A small MLP regressor for tabular rows, and its full-batch training (ChaosMining's recipe).

References
----------
Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local Attribution
Methods in Low SNR Environments", arXiv 2406.12150, 2024 (MLP with GELU, Adam, full-batch
MSE training).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from faithmap.core.validation import check_float, check_int
from faithmap.errors import ShapeError


def mlp_regressor(features: int, hidden: Sequence[int] = (100, 100, 100)) -> nn.Sequential:
    """Linear layers of widths ``hidden`` with GELU between them, one output ``(N, 1)``.

    The default is ChaosMining's regressor: 3 hidden layers of 100.

    References
    ----------
    Shi et al., "ChaosMining", arXiv 2406.12150, 2024.
    """
    check_int(features, "features", "mlp_regressor", low=1)
    layers: list[nn.Module] = []
    width = features
    for size in hidden:
        check_int(size, "hidden", "mlp_regressor", low=1)
        layers += [nn.Linear(width, size), nn.GELU()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def fit_regressor(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    epochs: int = 1000,
    lr: float = 1e-3,
    seed: int = 0,
) -> float:
    """Train ``model`` in place on ``(inputs, targets)`` with full-batch Adam on the MSE.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, F)`` to ``(N, 1)`` or ``(N,)``; its parameters are re-initialised from
        ``seed`` first, so the same seed gives the same model.
    inputs : Tensor
        ``(N, F)`` rows.
    targets : Tensor
        ``(N,)`` values.
    epochs : int, default=1000
        Full-batch steps (ChaosMining's default).
    lr : float, default=1e-3
    seed : int, default=0

    Returns
    -------
    float
        The training MSE of the last epoch (before its update). The model is left in eval
        mode.

    References
    ----------
    Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """
    check_int(epochs, "epochs", "fit_regressor", low=1)
    check_float(lr, "lr", "fit_regressor", low=0.0, low_open=True)
    check_int(seed, "seed", "fit_regressor")
    if inputs.dim() != 2 or targets.shape != (inputs.shape[0],):
        raise ShapeError(
            f"fit_regressor needs rows (N, F) and targets (N,). Got {tuple(inputs.shape)} and "
            f"{tuple(targets.shape)} instead."
        )
    with torch.random.fork_rng(devices=[]):  # seeded, leaving the global generator as it was
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = torch.zeros(())
    with torch.enable_grad():
        for _ in range(epochs):
            optimiser.zero_grad()
            loss = (model(inputs).reshape(-1) - targets).pow(2).mean()
            loss.backward()
            optimiser.step()
    model.eval()
    return float(loss.detach())
