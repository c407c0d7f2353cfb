"""Similarity of two explanations of the same samples: Spearman rank correlation and SSIM.

References
----------
Spearman, "The proof and measurement of association between two things", 1904.
Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004 (SSIM; Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03).
Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018 (both, on saliency maps).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.errors import ShapeError

Similarity = Literal["spearman", "ssim"]
SIMILARITIES = ("spearman", "ssim")


def average_ranks(values: Tensor) -> Tensor:
    """Ranks of each row ``(N, P)`` from 0, ties sharing their average rank (as scipy)."""
    n, p = values.shape
    ordered, order = values.sort(dim=1, stable=True)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    groups = (starts.cumsum(1) - 1) + p * torch.arange(n, device=values.device)[:, None]
    positions = torch.arange(p, device=values.device, dtype=torch.float64).expand(n, p)
    sums = torch.zeros(n * p, device=values.device, dtype=torch.float64)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, groups.flatten(), positions.flatten())
    counts.index_add_(0, groups.flatten(), torch.ones_like(positions).flatten())
    shared = (sums / counts.clamp(min=1))[groups]
    return torch.empty_like(shared).scatter_(1, order, shared)


def spearman(first: Tensor, second: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of samples ``(N, ...)``: ``(N,)``, NaN if flat."""
    a = average_ranks(first.flatten(1).double())
    b = average_ranks(second.flatten(1).double())
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    norms = torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(b, dim=1)
    correlation: Tensor = (a * b).sum(1) / norms
    return correlation


def _gaussian_filter(images: Tensor, sigma: float, radius: int) -> Tensor:
    """Separable Gaussian filter of ``(B, H, W)`` with mirrored edges (scipy's "reflect")."""
    x = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = images
    for dim in (-1, -2):
        edge_low = out.narrow(dim, 0, radius).flip(dim)
        edge_high = out.narrow(dim, out.shape[dim] - radius, radius).flip(dim)
        padded = torch.cat([edge_low, out, edge_high], dim=dim)
        moved = padded.movedim(dim, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        filtered = F.conv1d(flat, kernel.view(1, 1, -1)).view(*moved.shape[:-1], -1)
        out = filtered.movedim(-1, dim)
    return out


def ssim(first: Tensor, second: Tensor, *, data_range: float) -> Tensor:
    """Mean SSIM of each pair of images ``(N, C, H, W)``: ``(N,)``.

    Gaussian weights (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, sample covariance, the
    border of 5 pixels cropped and channels averaged: scikit-image's
    ``structural_similarity(..., gaussian_weights=True, data_range=data_range)``, the setting of
    Adebayo et al. Images need at least 11 x 11 pixels.
    """
    sigma, radius = 1.5, 5
    win = 2 * radius + 1
    height, width = first.shape[-2:]
    if height < win or width < win:
        raise ShapeError(
            f"SSIM needs maps of at least {win} x {win} pixels (its Gaussian window). Got "
            f"{height} x {width}; use similarity='spearman'."
        )
    n = first.shape[0]
    x = first.double().reshape(-1, height, width)
    y = second.double().reshape(-1, height, width)
    stack = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y]), sigma, radius)
    ux, uy, uxx, uyy, uxy = stack.chunk(5)
    cov_norm = win**2 / (win**2 - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    cropped = index[:, radius : height - radius, radius : width - radius]
    return cropped.reshape(n, -1).mean(1)


def fits_ssim(maps: Tensor) -> bool:
    """Whether ``maps`` ``(N, H, W)`` or ``(N, C, H, W)`` are images SSIM can compare (at least
    11 x 11 pixels, its Gaussian window)."""
    return maps.dim() in (3, 4) and min(maps.shape[-2:]) >= 11


def compare_maps(original: Tensor, new: Tensor, similarity: str, absolute: bool) -> Tensor:
    """Per-sample similarity of two batches of maps ``(N, ...)``, of ``|a|`` if ``absolute``."""
    a, b = (original.abs(), new.abs()) if absolute else (original, new)
    if similarity == "spearman":
        return spearman(a, b)
    # SSIM on maps scaled by their largest magnitude: [0, 1] absolute, [-1, 1] signed.
    scale_a = a.flatten(1).abs().amax(1).clamp(min=1e-30).view(-1, 1, 1, 1)
    scale_b = b.flatten(1).abs().amax(1).clamp(min=1e-30).view(-1, 1, 1, 1)
    images_a, images_b = (m if m.dim() == 4 else m.unsqueeze(1) for m in (a, b))
    return ssim(images_a / scale_a, images_b / scale_b, data_range=1.0 if absolute else 2.0)
