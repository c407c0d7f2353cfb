"""How much a method's maps move when only its own hyperparameters or its seed change (SAM).

Given ``K`` explanations of the same ``N`` samples by one method under ``K`` settings (a
hyperparameter grid, or seeds), :func:`map_spread` compares every pair of settings sample by
sample with the Spearman rank correlation and SSIM, and every setting with the first one (the
default, as SAM does). High values mean the method is insensitive to the choice; a deterministic
method under identical settings scores exactly 1.

SSIM is that of Wang et al. (Gaussian window of 11 taps, sigma 1.5,
:func:`faithmap.metrics.similarity.ssim`), on maps divided by their largest magnitude, with
``data_range`` 2 for signed maps (in ``[-1, 1]``) and 1 for ``absolute=True`` (SAM's scaling).
Maps need at least 11 x 11 pixels for SSIM; pass ``similarities=("spearman",)`` otherwise.

References
----------
Bansal, Agarwal, Nguyen, "SAM: The Sensitivity of Attribution Methods to Hyperparameters",
CVPR 2020.
Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from faithmap.core.explanation import attribution_map
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics.similarity import SIMILARITIES, compare_maps, fits_ssim

__all__ = ["SpreadResult", "map_spread"]


@dataclass(frozen=True)
class SpreadResult:
    """Similarity of one method's maps across settings, per sample.

    Attributes
    ----------
    pairwise : dict of str to Tensor
        For each similarity (``"spearman"``, ``"ssim"``), ``(N,)``: its mean over all
        ``K * (K - 1) / 2`` pairs of settings.
    to_default : dict of str to Tensor
        For each similarity, ``(N,)``: its mean over the pairs (first setting, other setting).
    settings : int
        ``K``, the number of settings compared.
    labels : tuple of str
        A name for each setting (its parameters), in the order given.
    absolute : bool
        Whether maps were compared as ``|a|``.
    """

    pairwise: dict[str, Tensor]
    to_default: dict[str, Tensor]
    settings: int
    labels: tuple[str, ...] = field(default=())
    absolute: bool = False

    def mean(self, similarity: str, *, of: str = "pairwise") -> float:
        """Mean over samples of ``similarity`` (NaN skipped), ``of`` pairwise or to_default."""
        table = self.pairwise if of == "pairwise" else self.to_default
        if similarity not in table:
            raise InvalidParameterError(
                f"The 'similarity' parameter must be one of {', '.join(map(repr, table))}. "
                f"Got {similarity!r} instead."
            )
        return float(table[similarity].double().nanmean())


def _read(maps: Sequence[object]) -> list[Tensor]:
    if isinstance(maps, Tensor | str) or not isinstance(maps, Sequence) or len(maps) < 2:
        raise InvalidParameterError(
            "The 'maps' parameter of map_spread must be a list of at least 2 explanations or "
            f"tensors (one per setting). Got {type(maps).__name__} of length "
            f"{len(maps) if isinstance(maps, Sequence) else 'n/a'} instead."
        )
    tensors = [attribution_map(m).detach() for m in maps]
    first = tensors[0]
    if first.dim() not in (3, 4):
        raise ShapeError(
            "The maps of map_spread must have shape (N, 1 or C, H, W) or (N, H, W). Got "
            f"{tuple(first.shape)} instead."
        )
    for index, tensor in enumerate(tensors):
        if tensor.shape != first.shape:
            raise ShapeError(
                "The maps of map_spread must all have the same shape (the same samples explained "
                f"under each setting). Setting 0 has {tuple(first.shape)}, setting {index} has "
                f"{tuple(tensor.shape)}."
            )
        if not bool(torch.isfinite(tensor).all()):
            raise ShapeError(f"The maps of setting {index} contain NaN or inf values.")
    # One map per sample: channels summed (signed), as every image metric here reads them.
    return [t.sum(1).double() if t.dim() == 4 else t.double() for t in tensors]


def map_spread(
    maps: Sequence[object],
    *,
    similarities: Sequence[str] = SIMILARITIES,
    absolute: bool = False,
    labels: Sequence[str] | None = None,
) -> SpreadResult:
    """Pairwise and to-default similarity of one method's maps under ``K`` settings.

    Parameters
    ----------
    maps : sequence of Explanation or Tensor
        ``K >= 2`` explanations of the same samples, ``(N, C, H, W)`` or ``(N, H, W)``; channels
        are summed. The first is the default setting.
    similarities : sequence of {"spearman", "ssim"}, default=("spearman", "ssim")
        What to compute.
    absolute : bool, default=False
        Compare ``|a|`` (for methods whose sign is not meaningful).
    labels : sequence of str or None, default=None
        A name for each setting, kept in the result.

    Returns
    -------
    SpreadResult
        Per-sample means over pairs; flat maps give NaN Spearman (skipped by means).

    Raises
    ------
    InvalidParameterError
        If fewer than two maps are given, or a similarity or the labels are wrong.
    ShapeError
        If the maps differ in shape, hold NaN, or are under 11 x 11 pixels with SSIM asked.

    References
    ----------
    Bansal, Agarwal, Nguyen, "SAM: The Sensitivity of Attribution Methods to Hyperparameters",
    CVPR 2020.

    Examples
    --------
    >>> a = torch.arange(144.0).view(1, 1, 12, 12)
    >>> spread = map_spread([a, a, 2 * a])  # scaling changes neither ranks nor SSIM
    >>> round(spread.mean("spearman"), 6), round(spread.mean("ssim", of="to_default"), 6)
    (1.0, 1.0)
    """
    tensors = _read(maps)
    chosen = tuple(similarities) if not isinstance(similarities, str) else (similarities,)
    if not chosen or any(s not in SIMILARITIES for s in chosen) or len(set(chosen)) < len(chosen):
        raise InvalidParameterError(
            "The 'similarities' parameter of map_spread must list distinct names from "
            f"{', '.join(map(repr, SIMILARITIES))}. Got {similarities!r} instead."
        )
    if "ssim" in chosen and not fits_ssim(tensors[0]):
        raise ShapeError(
            "SSIM needs maps of at least 11 x 11 pixels (its Gaussian window). Got "
            f"{tuple(tensors[0].shape[-2:])}; pass similarities=('spearman',)."
        )
    if not isinstance(absolute, bool):
        raise InvalidParameterError(
            f"The 'absolute' parameter of map_spread must be a bool. Got {absolute!r} instead."
        )
    names = tuple(labels) if labels is not None else tuple(f"setting {i}" for i in range(len(maps)))
    if len(names) != len(tensors) or not all(isinstance(n, str) for n in names):
        raise InvalidParameterError(
            "The 'labels' parameter of map_spread must hold one str per map "
            f"({len(tensors)}). Got {labels!r} instead."
        )
    pairs = list(itertools.combinations(range(len(tensors)), 2))
    pairwise: dict[str, Tensor] = {}
    to_default: dict[str, Tensor] = {}
    for similarity in chosen:
        scores = {
            (i, j): compare_maps(tensors[i], tensors[j], similarity, absolute) for i, j in pairs
        }
        pairwise[similarity] = torch.stack(list(scores.values())).mean(0)
        to_default[similarity] = torch.stack([scores[(0, j)] for j in range(1, len(tensors))]).mean(
            0
        )
    return SpreadResult(
        pairwise=pairwise,
        to_default=to_default,
        settings=len(tensors),
        labels=names,
        absolute=absolute,
    )
