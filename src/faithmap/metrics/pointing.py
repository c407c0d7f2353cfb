"""The pointing game: is the map's maximum on the object (within a tolerance)?

Scored against boolean ground-truth masks ``(N, 1, H, W)`` as every localisation metric (see
:mod:`faithmap.metrics.localization`: channels summed, row-column order, NaN for an empty mask,
which Quantus' pointing game counts as a hit). Accuracy can be pooled over samples or averaged
over per-class accuracies, as the TorchRay benchmark does; :func:`centre_baseline` is the map
every method should beat.

References
----------
Zhang, Bargal, Lin, Brandt, Shen, Sclaroff, "Top-down Neural Attention by Excitation
Backprop", ECCV 2016 / IJCV 2018 (the pointing game, 15-pixel tolerance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.constraints import Interval, Satisfies
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.metric import EMPTY_MASK, MetricResult, home_device, read_map, read_masks
from faithmap.core.registry import register_metric
from faithmap.errors import InvalidParameterError, ShapeError


@dataclass(frozen=True, kw_only=True)
class PointingResult(MetricResult):
    """Pointing-game hits (1.0), misses (0.0) and empty masks (NaN), with per-class means.

    Attributes
    ----------
    classes : Tensor or None
        ``(N,)`` class of each sample (from ``labels`` or the explanation's target), or
        ``None`` when neither was available.

    The other attributes are those of :class:`MetricResult`; :attr:`mean` is the accuracy
    pooled over samples, :attr:`class_mean` the mean of the per-class accuracies (the
    TorchRay benchmark's number).
    """

    classes: Tensor | None = None

    @property
    def per_class(self) -> dict[int, float]:
        """Accuracy of each class present, empty masks skipped (``{}`` without classes)."""
        if self.classes is None:
            return {}
        valid = ~self.values.isnan()
        return {
            int(c): float(self.values[(self.classes == c) & valid].double().mean())
            for c in sorted(set(self.classes[valid].tolist()))
        }

    @property
    def class_mean(self) -> float:
        """Mean of the per-class accuracies; the pooled :attr:`mean` when there are no classes."""
        accuracies = list(self.per_class.values())
        return sum(accuracies) / len(accuracies) if accuracies else self.mean


def centre_baseline(like: Tensor) -> Tensor:
    """A map ``(N, 1, H, W)`` peaking at the image centre: the pointing game's baseline.

    The peak is at row ``H // 2``, column ``W // 2`` (the lower right of the four central
    pixels for even sizes); the map falls with the squared distance from it, so its only
    maximum is the centre. Any method should be compared with it (TorchRay reports 69.6% on
    VOC07 for it).

    Parameters
    ----------
    like : Tensor
        Images or masks ``(N, C, H, W)``; the map takes their N, H, W and device.

    Examples
    --------
    >>> import torch
    >>> centre_baseline(torch.zeros(1, 1, 3, 5)).flatten().argmax().item()
    7
    """
    if not isinstance(like, Tensor) or like.dim() != 4:
        got = tuple(like.shape) if isinstance(like, Tensor) else type(like).__name__
        raise ShapeError(f"centre_baseline needs a tensor (N, C, H, W). Got {got} instead.")
    n, _, height, width = like.shape
    rows = torch.arange(height, device=like.device, dtype=torch.float32) - height // 2
    cols = torch.arange(width, device=like.device, dtype=torch.float32) - width // 2
    cone = -(rows[:, None] ** 2 + cols[None, :] ** 2)
    return cone.expand(n, 1, height, width).clone()


@register_metric(
    "pointing_game",
    constraints={
        "tolerance": [Interval(int, 0)],
        "labels": [None, Satisfies(lambda v: not isinstance(v, str | bool | float), "ints")],
    },
    higher_is_better=True,
)
def pointing_game(
    explanation: Explanation | Tensor,
    masks: Tensor,
    *,
    tolerance: int = 15,
    labels: Sequence[int] | Tensor | None = None,
) -> PointingResult:
    """Pointing game: is the map's maximum on the object (within a tolerance)?

    A hit when some mask pixel lies within ``tolerance`` pixels (Euclidean, strictly less, as
    TorchRay's open disc; with ``tolerance=0`` the maximum itself must be on the mask) of the
    map's maximum. Ties between maxima go to the first in row-major order (``argmax``), as in
    TorchRay. Empty masks give NaN.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)``.
    masks : Tensor
        ``(N, 1, H, W)`` boolean object masks.
    tolerance : int, default=15
        In pixels; the paper and TorchRay use 15 at 224 x 224 (scale it with the resolution).
    labels : sequence or tensor of ints, optional
        The class of each sample, for the per-class accuracies; default: the explanation's
        target.

    Returns
    -------
    PointingResult
        ``values`` are 1.0 (hit), 0.0 (miss) or NaN (empty mask); ``per_class`` and
        ``class_mean`` give the per-class accuracies and their mean.

    References
    ----------
    Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016 / IJCV 2018.

    Examples
    --------
    >>> import torch
    >>> masks = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    >>> masks[0, 0, 4, 4] = True
    >>> pointing_game(centre_baseline(masks), masks, tolerance=0).values
    tensor([1., nan])
    """
    owner = "pointing_game"
    maps = read_map(explanation, owner)
    flat = read_masks(masks, maps, owner)
    n, height, width = maps.shape
    peak = maps.flatten(1).argmax(1)
    rows = torch.arange(height, device=maps.device)[None, :, None] - (peak // width)[:, None, None]
    cols = torch.arange(width, device=maps.device)[None, None, :] - (peak % width)[:, None, None]
    distance2 = rows**2 + cols**2
    accept = (distance2 < tolerance**2) | (distance2 == 0)
    hits = (flat & accept).flatten(1).any(1).float()
    values = hits.masked_fill(~flat.flatten(1).any(1), float("nan"))
    classes, rule = _classes(explanation, labels, n, maps.device)
    home = home_device(explanation)
    return PointingResult(
        metric=owner,
        values=values.to(home),
        higher_is_better=True,
        choices={
            "channels": "sum",
            "empty_mask": EMPTY_MASK,
            "tolerance": tolerance,
            "ties": "first maximum in row-major order",
            "classes": rule,
        },
        cost=Cost(),
        classes=None if classes is None else classes.to(home),
    )


def _classes(
    explanation: object, labels: Sequence[int] | Tensor | None, n: int, device: torch.device
) -> tuple[Tensor | None, str | None]:
    if labels is not None:
        try:
            classes = torch.as_tensor(labels, device=device).reshape(-1)
        except (TypeError, ValueError) as err:
            raise InvalidParameterError(
                "The 'labels' parameter of pointing_game must be a sequence or tensor of ints. "
                f"Got {type(labels).__name__} instead."
            ) from err
        if classes.shape != (n,) or classes.is_floating_point():
            raise InvalidParameterError(
                f"The 'labels' parameter of pointing_game must hold {n} ints, one per sample. "
                f"Got {tuple(classes.shape)} of {classes.dtype} instead."
            )
        return classes.long(), "labels"
    if isinstance(explanation, Explanation) and explanation.target is not None:
        return explanation.target.to(device).long(), "explained"
    return None, None
