"""ROAD: remove and debias, with noisy linear imputation (Rong et al. 2022).

A fraction ``p`` of the pixels is removed, most relevant first (MoRF) or least relevant first
(LeRF), and each removed pixel is filled with the weighted mean of its eight neighbours (weight
1/6 for the four direct ones, 1/12 for the diagonals; neighbours outside the image drop out),
neighbours that are removed too being unknowns of the same sparse linear system. Gaussian noise
of standard deviation ``noise`` is added to the filled pixels. A constant fill draws the mask's
shape into the image, and that shape alone can tell the class (the paper's "class information
leakage"); the smooth imputation hides it far better. The combined score is the mean over the
fractions of ``(LeRF - MoRF) / 2``, as in pytorch-grad-cam's ``ROADCombined``.

The system is solved for a whole batch at once on the model's device by conjugate gradients on
the 3x3 stencil (it is symmetric positive definite whenever some pixel of the image is kept),
instead of the reference's per-image CPU sparse factorisation.

References
----------
Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.core.constraints import SEED, Interval, Satisfies, options
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare
from faithmap.core.model import Model
from faithmap.core.ordering import pixel_ranks
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_metric
from faithmap.core.targets import TARGET, Target, TargetLike
from faithmap.core.validation import check_float
from faithmap.errors import InvalidParameterError
from faithmap.metrics.draws import key_table, row_normal

_CHUNK_ELEMENTS = 2**24
"""Imputed inputs held at a time (64 MiB of float32): samples are processed in chunks."""
_SOLVE_ELEMENTS = 3 * 2**17
"""Elements per linear solve: larger batches amortise per-iteration overhead until they spill
the CPU's caches (on 2 cores, 32 RGB or 96 grey 64x64 images solve fastest)."""

_COMPACT_EVERY = 8
_COMPACT_BELOW = 0.75
"""Every few iterations, solved systems leave the stack once no more than this share remain."""

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Removed fractions: 10 % to 90 % in steps of 10 % (the reference demo uses 0.1-0.5, 0.7, 0.9)."""


def _box121(values: Tensor) -> Tensor:
    """``[1, 2, 1]`` x ``[1, 2, 1]`` sum over the 3x3 window of every pixel (zero outside).

    Twelve times the neighbour average (1/6 direct, 1/12 diagonal) plus four times the centre,
    as two separable passes of shifted adds.
    """
    padded = F.pad(values, (1, 1, 1, 1))
    rows = padded[..., :-2, :] + padded[..., 2:, :]
    rows.add_(padded[..., 1:-1, :], alpha=2)
    both = rows[..., :-2] + rows[..., 2:]
    return both.add_(rows[..., 1:-1], alpha=2)


def _coarse_guess(images: Tensor, removed: Tensor, max_iter: int | None) -> Tensor | None:
    """A starting point from the same problem at half resolution (cascadic CG), if not tiny."""
    if min(images.shape[-2:]) < 8:
        return None
    known = (~removed).to(images.dtype)
    weight = F.avg_pool2d(known, 2, ceil_mode=True)
    pooled = F.avg_pool2d(images * known, 2, ceil_mode=True) / weight.clamp_min(1e-12)
    coarse = linear_imputation(pooled, weight == 0, tol=1e-3, max_iter=max_iter)
    return F.interpolate(coarse, size=images.shape[-2:], mode="bilinear", align_corners=False)


def linear_imputation(
    images: Tensor, removed: Tensor, *, tol: float = 1e-5, max_iter: int | None = None
) -> Tensor:
    """Fill the ``removed`` pixels of ``images`` by the neighbour-average linear system.

    Every removed pixel equals the weighted mean of its in-image neighbours (1/6 direct, 1/12
    diagonal), known neighbours on the right-hand side; solved by batched conjugate gradients,
    one system per image and channel, each stopped when its residual falls below ``tol`` times
    its right-hand side, starting from the solution at half resolution.

    Parameters
    ----------
    images : Tensor
        ``(B, C, H, W)`` images.
    removed : Tensor
        ``(B, 1, H, W)`` boolean, True where a pixel (all its channels) is removed. Each image
        must keep at least one pixel.
    tol : float, default=1e-5
        Relative residual at which a system counts as solved (on 64x64 images in [0, 1] the
        filled values were then within 1e-3 of the exact solution, a tenth of ROAD's noise).
    max_iter : int or None, default=None
        Iteration cap; ``None``: ``4 * (H + W) + 50``.

    Returns
    -------
    Tensor
        The images with the removed pixels replaced by the solution (no noise).
    """
    batch, channels, height, width = images.shape
    # one system per image and channel, as rows of a (B * C, 1, H, W) stack
    flat = images.reshape(batch * channels, 1, height, width)
    mask = removed.to(images.dtype).repeat_interleave(channels, dim=0)
    ones = torch.ones(1, 1, height, width, dtype=images.dtype, device=images.device)
    # The system times 12: 12 * (in-image weight) * v - 12 * (weighted neighbours of v), the
    # known pixels on the right. As 12 * neighbours = box121 - 4 * centre, and the in-image
    # weight is that of ones, the left-hand side is box121(ones) * v - box121(v).
    diagonal = _box121(ones)

    def apply(values: Tensor) -> Tensor:
        return torch.addcmul(_box121(values).neg_(), diagonal, values).mul_(mask)

    rhs = _box121((1 - mask) * flat).mul_(mask)
    guess = _coarse_guess(images, removed, max_iter)
    start = rhs / (diagonal - 4) if guess is None else guess.reshape_as(flat)
    solution = mask * start
    residual = rhs - apply(solution)
    direction = residual.clone()
    norm = residual.pow(2).sum((2, 3), keepdim=True)
    target = (tol**2) * rhs.pow(2).sum((2, 3), keepdim=True)
    tiny = torch.finfo(images.dtype).tiny
    limit = max_iter if max_iter is not None else 4 * (height + width) + 50
    solved = solution.clone()  # each system's solution, written when it leaves the stack
    rows = torch.arange(flat.shape[0], device=images.device)
    for iteration in range(limit):
        active = norm > target
        if iteration % _COMPACT_EVERY == 0:
            still = active.flatten()
            remaining = int(still.sum())
            if remaining == 0:
                break
            if remaining <= _COMPACT_BELOW * rows.shape[0]:  # drop the converged systems
                solved[rows] = solution
                keep = still.nonzero().flatten()
                rows, mask, solution, residual, direction, norm, target, active = (
                    t[keep]
                    for t in (rows, mask, solution, residual, direction, norm, target, active)
                )
        elif not bool(active.any()):
            break
        product = apply(direction)
        curvature = (direction * product).sum((2, 3), keepdim=True)
        step = torch.where(active, norm / curvature.clamp_min(tiny), 0)
        solution.addcmul_(step, direction)
        residual.addcmul_(step, product, value=-1)
        new_norm = residual.pow(2).sum((2, 3), keepdim=True)
        ratio = torch.where(active, new_norm / norm.clamp_min(tiny), 0)
        direction.mul_(ratio).add_(residual)
        norm = torch.where(active, new_norm, norm)
    solved[rows] = solution
    full_mask = removed.expand_as(images).bool()
    return torch.where(full_mask, solved.view_as(images), images)


def _imputed(
    x: Tensor, ranks: Tensor, counts: list[int], keys: Tensor, samples: Tensor, noise: float
) -> Tensor:
    """ROAD's inputs for ``samples``: ``(S, 2F, C, H, W)``, MoRF then LeRF for each fraction.

    ``counts`` are the pixels removed at each fraction, ``ranks`` ``(N, H * W)`` the pixels'
    relevance ranks, ``keys`` the noise keys of every (sample, input) row.
    """
    height, width = x.shape[-2:]
    solve = max(1, _SOLVE_ELEMENTS // x[0].numel())
    filled = x.new_empty(samples.shape[0], 2 * len(counts), *x.shape[1:])
    for index in range(2 * len(counts)):
        count = counts[index % len(counts)]
        for first in range(0, samples.shape[0], solve):
            group = samples[first : first + solve]
            rank = ranks[group].view(-1, 1, height, width)
            lerf = index >= len(counts)
            removed = rank >= height * width - count if lerf else rank < count
            imputed = linear_imputation(x[group], removed)
            if noise > 0:
                draws = row_normal(x.shape[1:], keys[group, index], x.dtype)
                imputed.addcmul_(draws, removed, value=noise)
            filled[first : first + group.shape[0], index] = imputed
    return filled


@dataclass(frozen=True)
class _Hit(Target):
    """Scores 1 when the model's top class is the target class, else 0 (top-1 accuracy)."""

    def select(self, output: Tensor, samples: Tensor) -> Tensor:
        assert self.classes is not None  # checked before construction
        return (output.argmax(1) == self.classes[samples]).to(output.dtype)

    def subset(self, index: Tensor) -> Target:
        assert self.classes is not None
        return _Hit(classes=self.classes[index])


@dataclass(frozen=True, kw_only=True)
class RoadResult(MetricResult):
    """ROAD scores after removing each fraction of the pixels, in both orders.

    Attributes
    ----------
    morf, lerf : Tensor
        ``(N, F)`` target score with the most / least relevant fraction removed.
    fractions : Tensor
        ``(F,)`` the removed fractions.

    ``values`` is the combined score, the mean over the fractions of ``(lerf - morf) / 2``
    (higher is better: removing the least relevant pixels should hurt less than removing the
    most relevant ones).
    """

    morf: Tensor
    lerf: Tensor
    fractions: Tensor


@register_metric(
    "road",
    constraints={
        "target": TARGET,
        "fractions": [
            Satisfies(
                lambda v: not isinstance(v, str) and hasattr(v, "__iter__"),
                "a sequence of numbers in (0, 1)",
                invalid=0.5,
            )
        ],
        "noise": [Interval(float, 0.0)],
        "measure": [options(("probability", "accuracy"))],
        "activation": [ACTIVATION],
        "seed": [SEED],
    },
    higher_is_better=True,
    constant_model=0.0,
)
def road(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    fractions: Sequence[float] = FRACTIONS,
    noise: float = 0.01,
    measure: Literal["probability", "accuracy"] = "probability",
    activation: Activation = "softmax",
    seed: int = 0,
) -> RoadResult:
    """ROAD MoRF and LeRF curves with noisy linear imputation, and their combined score.

    Parameters
    ----------
    model, inputs
        The model and a batch of images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``; pixels are ranked by the channel sum (ties broken
        by a seeded random permutation).
    target : None, int, tensor or callable
        ``None``: the explanation's target if it has one, else the predicted class.
    fractions : sequence of float, default=(0.1, 0.2, ..., 0.9)
        Fractions of the pixels removed, each in ``(0, 1)``; ``int(p * H * W)`` pixels.
    noise : float, default=0.01
        Standard deviation of the Gaussian noise added to the imputed pixels, in input units
        (the reference imputes in [0, 1] pixel space).
    measure : {"probability", "accuracy"}, default="probability"
        Score the target's output (``activation``) or whether the top class is the target
        (the paper's accuracy; needs class targets).
    activation : {"softmax", "logits"}, default="softmax"
    seed : int, default=0
        Seed of the tie-break and of the imputation noise.

    Returns
    -------
    RoadResult
        Cost: ``2 * len(fractions)`` forward passes per image (plus target resolution).

    References
    ----------
    Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient Evaluation Strategy
    for Attribution Methods", ICML 2022.
    """
    owner = "road"
    chosen = tuple(
        check_float(p, "fractions", owner, low=0.0, high=1.0, low_open=True) for p in fractions
    )
    if not chosen or any(p >= 1.0 for p in chosen):
        raise InvalidParameterError(
            f"The 'fractions' parameter of road must be a non-empty sequence of numbers in "
            f"(0, 1); removing every pixel leaves nothing to impute from. Got {fractions!r}."
        )
    prepared = prepare(owner, model, inputs, explanation, target, image=True)
    wrapped, checked, x = prepared.model, prepared.inputs, prepared.x
    attributions, target, rule = prepared.attributions, prepared.target, prepared.rule
    device = x.device
    height, width = x.shape[-2:]
    with wrapped.ledger.track() as tracker:
        resolved = wrapped.target(x, target)
        if measure == "accuracy":
            if resolved.classes is None:
                raise InvalidParameterError(
                    "ROAD's measure='accuracy' needs class targets; a callable target has no "
                    "class to compare the top prediction with. Use measure='probability'."
                )
            resolved = _Hit(classes=resolved.classes)
        ranks = pixel_ranks(attributions.detach().to(device), seed)
        counts = [int(height * width * p) for p in chosen]
        per_sample = 2 * len(chosen)
        keys = key_table(seed, x.shape[0], per_sample, device)
        # Imputed images are made a chunk of samples at a time, each (order, fraction) solved
        # for many samples in one go (their systems converge alike), then fed to the model.
        chunk = max(1, _CHUNK_ELEMENTS // (per_sample * x[0].numel()))
        parts = []
        for start in range(0, x.shape[0], chunk):
            samples = torch.arange(start, min(start + chunk, x.shape[0]), device=device)
            filled = _imputed(x, ranks, counts, keys, samples, noise)

            def rows(local: Tensor, indices: Tensor, filled: Tensor = filled) -> Tensor:
                return filled[local, indices]

            scorer = resolved.subset(samples)
            parts.append(
                wrapped.score_rows(
                    samples.shape[0], per_sample, rows, scorer, activation=activation, device=device
                )
            )
        scores = torch.cat(parts)
    morf, lerf = scores[:, : len(chosen)], scores[:, len(chosen) :]
    home = checked.device
    return RoadResult(
        metric="road",
        values=((lerf - morf) / 2).mean(1).to(home),
        morf=morf.to(home),
        lerf=lerf.to(home),
        fractions=torch.tensor(chosen, device=home),
        higher_is_better=True,
        target=None if resolved.classes is None else resolved.classes.to(home),
        choices={
            "fill": f"noisy_linear({noise:g})",
            "fractions": chosen,
            "measure": measure,
            "activation": activation,
            "target": rule,
            "unit": "pixel",
            "seed": seed,
        },
        cost=tracker.cost,
    )
