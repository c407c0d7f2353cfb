"""Features and coalitions shared by the black-box methods that remove whole features.

Feature ablation, LIME, KernelSHAP, Sobol and HSIC all score the model on copies of each input in
which a *coalition* of features is kept and the rest removed. Here a feature is a region of an
image (:mod:`faithmap.core.regions`) or a column or group of columns of a tabular batch
``(N, F)``; a coalition is a keep vector over the features (``1`` keep, ``0`` remove, values in
between blend). The same coalitions are used for every input, so the whole batch of inputs is
scored in one stream of model calls. The methods whose allocations grow with ``R**2`` or
``R x n_samples`` check the memory first (:func:`check_fit_memory`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from faithmap.core.model import Model
from faithmap.core.readout import Activation
from faithmap.core.regions import Regions, RegionsLike, make_regions
from faithmap.core.removal import FillLike, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.errors import ResourceError, ShapeError

Coalitions = Callable[[Tensor], Tensor]
"""Keep vectors ``(B, R)`` of the coalitions with the given indices ``(B,)``."""


@dataclass(frozen=True)
class Features:
    """The features of a batch: image regions, or columns (or groups of columns) of rows.

    Attributes
    ----------
    count : int
        The number of features ``R``.
    regions : Regions or None
        The partition of the images or of the rows' columns; ``None`` when every column of an
        ``(N, F)`` batch is a feature (the keep vectors are the masks).
    """

    count: int
    regions: Regions | None

    def masks(self, keep: Tensor, samples: Tensor) -> Tensor:
        """Input keep-masks of the rows ``samples`` from feature keep vectors ``(B, R)``."""
        return keep if self.regions is None else self.regions.to_pixels(keep, samples)

    def paint(self, values: Tensor) -> Tensor:
        """Per-feature values ``(N, R)`` as a map: ``(N, 1, H, W)``, or ``(N, F)`` for rows
        (each column its group's value)."""
        return values if self.regions is None else self.regions.paint(values)


def make_features(spec: RegionsLike, inputs: Tensor) -> Features:
    """The features of ``inputs``: ``spec`` resolved by :func:`~faithmap.core.regions.make_regions`.

    Images ``(N, C, H, W)`` take any image partition; rows ``(N, F)`` take ``"columns"``,
    ``"windows:K"``, feature groups (a list of column-index lists) or an ``(F,)`` label array.
    The image-only specs ``"slic"``, ``"slic:K"``, ``"patches"``, ``"patches:K"`` (the methods'
    defaults) mean every column for rows, as they always have.
    """
    if inputs.dim() == 2:
        image_only = ("slic", "patches", "columns", "pixels")
        if isinstance(spec, str) and spec.partition(":")[0] in image_only:
            return Features(int(inputs.shape[1]), None)
        regions = make_regions(spec, inputs)
        return Features(regions.count, regions)
    if inputs.dim() != 4:
        raise ShapeError(
            "Feature-removal methods explain images (N, C, H, W) or tabular rows (N, F). Got "
            f"inputs of shape {tuple(inputs.shape)} instead; flatten other inputs to (N, F)."
        )
    regions = make_regions(spec, inputs)
    return Features(regions.count, regions)


MEMORY_SHARE = 0.5
"""The share of the available memory one allocation of a method may plan to use."""


def available_memory(device: torch.device | str | None = None) -> int | None:
    """Bytes of memory available now: free GPU memory for a CUDA device; otherwise the host's
    available memory (psutil if installed, else ``MemAvailable`` of ``/proc/meminfo``).
    ``None`` when it cannot be told."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            return None
    return None


def format_bytes(count: float) -> str:
    """``count`` bytes as a short human figure (``"18.4 GB"``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def check_memory(
    needed: int, what: str, fix: str, *, device: torch.device | str | None = None
) -> None:
    """Raise :class:`~faithmap.errors.ResourceError` *before* allocating ``needed`` bytes when
    that is more than :data:`MEMORY_SHARE` of the memory available.

    ``what`` says what would be allocated, ``fix`` how to need less. Where the available
    memory cannot be told, nothing is checked.
    """
    available = available_memory(device)
    if available is None or needed <= MEMORY_SHARE * available:
        return
    raise ResourceError(
        f"{what} would need about {format_bytes(needed)} of memory, more than "
        f"{MEMORY_SHARE:.0%} of the {format_bytes(available)} available. {fix}"
    )


def largest_fitting(bytes_for: Callable[[int], int], budget: float, high: int) -> int:
    """The largest ``count`` in ``[1, high]`` with ``bytes_for(count) <= budget`` (0 if none),
    for a ``bytes_for`` that grows with ``count``."""
    low, top = 0, high
    while low < top:
        middle = (low + top + 1) // 2
        if bytes_for(middle) <= budget:
            low = middle
        else:
            top = middle - 1
    return low


def check_fit_memory(
    owner: str,
    bytes_for: Callable[[int, int], int],
    features: int,
    samples: int,
    *,
    device: torch.device | str | None = None,
) -> None:
    """The memory check of a regression over ``samples`` coalitions of ``features`` features.

    ``bytes_for(features, samples)`` is what the method allocates; when that is too much
    (:func:`check_memory`) the error says how many features would fit at this sample budget
    and suggests grouping columns with ``regions=``, or fewer samples.
    """
    needed = bytes_for(features, samples)
    available = available_memory(device)
    if available is None or needed <= MEMORY_SHARE * available:
        return
    budget = MEMORY_SHARE * available
    fitting = largest_fitting(lambda count: bytes_for(count, samples), budget, features)
    groups = (
        f"group them into at most {fitting} features with regions= (for rows (N, F): "
        f"'windows:{-(-features // max(fitting, 1))}', a list of column-index lists such as "
        "one-hot blocks, or an (F,) integer label array; for images a coarser partition such "
        "as 'patches:K' or 'slic:K')"
        if fitting
        else "group them into fewer features with regions="
    )
    check_memory(
        needed,
        f"{owner} over {features} features with {samples} coalition samples (float64 matrices "
        f"of {features} x {features} and {samples} x {features})",
        f"Explain fewer features: {groups}, or lower n_samples.",
        device=device,
    )


def score_coalitions(
    model: Model,
    inputs: Tensor,
    target: Target,
    features: Features,
    fill: FillLike,
    coalitions: Coalitions,
    count: int,
    *,
    activation: Activation,
) -> Tensor:
    """Target scores ``(N, count)`` of every input with each of ``count`` coalitions kept.

    ``coalitions(indices)`` gives the keep vectors of a batch of coalition indices; they are
    turned into input masks and blended with the fill on the inputs' device, batch by batch.
    """
    substrate = make_removal(fill).substrate(inputs)

    def masks(samples: Tensor, indices: Tensor) -> Tensor:
        keep = coalitions(indices).to(device=inputs.device, dtype=inputs.dtype)
        return features.masks(keep, samples)

    return score_removals(model, inputs, target, substrate, masks, count, activation=activation)


def weighted_least_squares(
    design: Tensor, weights: Tensor, targets: Tensor, *, ridge: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Weighted (ridge) regression with an unpenalised intercept, for all inputs at once.

    Parameters
    ----------
    design : Tensor
        ``(S, R)`` coalitions, shared by every input.
    weights : Tensor
        ``(S,)`` sample weights, shared by every input.
    targets : Tensor
        ``(N, S)`` scores, one row per input.
    ridge : float, default=0.0
        L2 penalty on the coefficients (scikit-learn's ``Ridge(alpha=ridge)``).

    Returns
    -------
    coefficients : Tensor
        ``(N, R)``.
    intercept : Tensor
        ``(N,)``.
    """
    design, weights, targets = design.double(), weights.double(), targets.double()
    total = weights.sum()
    x_mean = weights @ design / total
    y_mean = targets @ weights / total
    centred = design - x_mean
    gram = centred.T @ (weights[:, None] * centred)
    gram = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    moments = centred.T @ (weights[:, None] * (targets - y_mean[:, None]).T)
    coefficients = solve_normal_equations(gram, moments).T
    return coefficients, y_mean - coefficients @ x_mean


def solve_normal_equations(gram: Tensor, moments: Tensor) -> Tensor:
    """The minimum-norm solution of ``gram @ solution = moments`` for a symmetric positive
    semi-definite ``gram``, in float64.

    Eigen-directions of ``gram`` below ``1e-10`` of its largest eigenvalue are dropped, so an
    under-determined fit (fewer coalitions than features) has one answer, whatever the rounding
    of the scores.
    """
    values, vectors = torch.linalg.eigh(gram.double())
    kept = values > 1e-10 * values.max().clamp_min(torch.finfo(torch.float64).tiny)
    inverse = torch.where(kept, 1.0 / values, torch.zeros_like(values))
    solution: Tensor = vectors @ (inverse[:, None] * (vectors.T @ moments.double()))
    return solution
