"""A synthetic time-series set whose class evidence is one known window of each signal.

Each signal ``(C, T)`` is smooth background noise with one burst: a Hann-windowed sine of the
class's frequency (class 0 slow, class 1 fast) in a random window. The burst's samples are the
ground-truth mask, so localisation metrics and tests can check whether an explanation points
at the window. :class:`faithmap.testing.standins.BurstDetector` classifies them with matched
filters, so its evidence is exactly the burst.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.core.validation import check_int

SIGNAL_CLASSES: Final[tuple[str, ...]] = ("slow", "fast")
"""The class of label ``k`` is ``SIGNAL_CLASSES[k]``."""
PERIODS: Final[tuple[int, ...]] = (16, 6)
"""Samples per cycle of each class's burst."""
BURST: Final = 64
"""Samples in a burst window."""
_NOISE: Final = 0.25


@dataclass(frozen=True)
class SignalsBatch:
    """Signals ``(N, C, T)``, labels ``(N,)`` and burst masks ``(N, 1, T)`` (bool)."""

    signals: Tensor
    labels: Tensor
    masks: Tensor


def burst(period: int, length: int = BURST) -> Tensor:
    """The Hann-windowed sine of ``period`` samples per cycle, ``(length,)``."""
    t = torch.arange(length, dtype=torch.float32)
    return torch.hann_window(length, periodic=False) * torch.sin(2 * math.pi * t / period)


def make_signals(n: int, *, length: int = 512, channels: int = 1, seed: int = 0) -> SignalsBatch:
    """``n`` signals of ``length`` samples with one class burst each, deterministic from the seed.

    Examples
    --------
    >>> batch = make_signals(4, length=256)
    >>> batch.signals.shape, batch.masks.shape, int(batch.masks[0].sum())
    (torch.Size([4, 1, 256]), torch.Size([4, 1, 256]), 64)
    """
    check_int(n, "n", "make_signals", low=1)
    check_int(length, "length", "make_signals", low=2 * BURST)
    check_int(channels, "channels", "make_signals", low=1)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, len(SIGNAL_CLASSES), (n,), generator=generator)
    starts = torch.randint(0, length - BURST + 1, (n,), generator=generator)
    noise = torch.randn(n, channels, length, generator=generator) * _NOISE
    smooth = F.avg_pool1d(noise, 5, stride=1, padding=2, count_include_pad=False)
    signals = smooth.clone()
    masks = torch.zeros(n, 1, length, dtype=torch.bool)
    for i in range(n):
        start = int(starts[i])
        signals[i, :, start : start + BURST] += burst(PERIODS[int(labels[i])])
        masks[i, 0, start : start + BURST] = True
    return SignalsBatch(signals, labels, masks)
