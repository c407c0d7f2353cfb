"""BAM: does an attribution follow the relative importance of features known by construction?

All three metrics read the *region statistic* of Yang and Kim: the positive part of the map
(positive values summed over channels), scaled per image to ``[0, 1]`` as
``(A - min A) / (p99(A) - min A)`` and clipped, then averaged over the object's pixels. The
data and models are :func:`faithmap.data.make_bam` and :mod:`faithmap.zoo.bam`:

- **model contrast score** (MCS): statistic under the object model minus statistic under the
  scene model, same image, same object region. The object model relies on the object, the scene
  model ignores it, so a faithful method scores above 0.
- **input dependence rate** (IDR): share of images where, for the scene model (to which the object
  is a common feature that predicts nothing), the region's statistic is *lower* with the object
  pasted than on the same scene without it.
- **input independence rate** (IIR): share of image pairs whose region statistic changes by less
  than ``tolerance`` (10 %) of its value without the patch, where the patch changes the input but
  not the model's output (a *functionally insignificant* patch).

Per-sample values are the difference (MCS) or 1/0 (IDR, IIR); the mean is the score. A sample
with an empty mask, or whose map is constant (no p99 above its minimum), or left out by
``valid`` (BAM scores only images both models classify correctly), is NaN and skipped.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", arXiv
1907.09701, 2019 (``bam/metrics.py``, ``bam/attributions.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from faithmap.core.constraints import Interval, check_param
from faithmap.core.cost import Cost
from faithmap.core.explanation import attribution_map
from faithmap.core.metric import EMPTY_MASK, MetricResult, read_masks
from faithmap.errors import ShapeError

__all__ = [
    "input_dependence_rate",
    "input_independence_rate",
    "model_contrast_score",
    "region_attribution",
]

_PERCENTILE = 0.99
"""BAM's upper reference of the per-image scaling (``visualize_pos_attr``)."""


def _positive_map(explanation: object, owner: str) -> Tensor:
    """``(N, H, W)``: positive attribution values summed over channels, float64."""
    attributions = attribution_map(explanation).detach()
    if attributions.dim() not in (3, 4):
        raise ShapeError(
            f"The attributions for {owner} must have shape (N, 1 or C, H, W) or (N, H, W). "
            f"Got {tuple(attributions.shape)} instead."
        )
    if not bool(torch.isfinite(attributions).all()):
        raise ShapeError(
            f"The attributions for {owner} contain NaN or inf values. Check the method's output."
        )
    positive = attributions.double().clamp(min=0)
    return positive.sum(1) if positive.dim() == 4 else positive


def region_attribution(explanation: object, masks: Tensor) -> Tensor:
    """BAM's statistic of each sample: mean over the mask of the positive map scaled to [0, 1].

    Parameters
    ----------
    explanation : Explanation or Tensor
        Maps ``(N, C, H, W)`` or ``(N, H, W)``; positive values are summed over channels.
    masks : Tensor
        ``(N, 1, H, W)`` boolean region of each sample.

    Returns
    -------
    Tensor
        ``(N,)`` float64 in ``[0, 1]``; NaN for an empty mask or a constant map.

    Examples
    --------
    >>> maps = torch.zeros(1, 1, 10, 10)
    >>> maps[0, 0, :5] = 1.0  # the top half
    >>> region = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    >>> region[0, 0, :, :5] = True  # the left half
    >>> region_attribution(maps, region)
    tensor([0.5000], dtype=torch.float64)
    """
    positive = _positive_map(explanation, "region_attribution")
    flat = read_masks(masks, positive, "region_attribution").flatten(1)
    values = positive.flatten(1)
    low = values.amin(1, keepdim=True)
    high = torch.quantile(values, _PERCENTILE, dim=1, keepdim=True)
    scaled = ((values - low) / (high - low)).clamp(0.0, 1.0)
    inside = (scaled * flat).sum(1) / flat.sum(1)
    undefined = ~flat.any(1) | (high[:, 0] <= low[:, 0])
    return inside.masked_fill(undefined, float("nan"))


def _valid(valid: Tensor | None, n: int, owner: str) -> Tensor:
    if valid is None:
        return torch.ones(n, dtype=torch.bool)
    if not isinstance(valid, Tensor) or valid.shape != (n,) or valid.dtype != torch.bool:
        raise ShapeError(
            f"The 'valid' parameter of {owner} must be a boolean tensor of shape ({n},), one "
            f"flag per sample. Got {getattr(valid, 'shape', type(valid).__name__)} instead."
        )
    return valid.cpu()


def _pair(first: object, second: object, masks: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    # Both are read against the same masks, so they hold the same samples.
    return region_attribution(first, masks), region_attribution(second, masks)


def _result(metric: str, values: Tensor, home: object, choices: dict[str, object]) -> MetricResult:
    device = attribution_map(home).device
    return MetricResult(
        metric=metric,
        values=values.float().to(device),
        higher_is_better=True,
        choices={
            "statistic": "mean over mask of positive map scaled by (min, p99)",
            "empty_mask": EMPTY_MASK,
            **choices,
        },
        cost=Cost(),
    )


def model_contrast_score(
    object_model: object, scene_model: object, masks: Tensor, *, valid: Tensor | None = None
) -> MetricResult:
    """Model contrast score: region statistic under the object model minus the scene model's.

    Parameters
    ----------
    object_model, scene_model : Explanation or Tensor
        Maps of the same images by the same method, for the model trained on the object's class
        and for the model trained on the scene's class (each explaining its predicted class).
    masks : Tensor
        ``(N, 1, H, W)`` boolean object masks.
    valid : Tensor or None, default=None
        ``(N,)`` bool: samples to score (BAM: those both models classify correctly).

    Returns
    -------
    MetricResult
        Per-sample differences in ``[-1, 1]``; the mean is the MCS. Higher is better.

    References
    ----------
    Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019.

    Examples
    --------
    >>> masks = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    >>> masks[..., 2:6, 2:6] = True
    >>> model_contrast_score(masks.float(), (~masks).float(), masks).mean
    1.0
    """
    a, b = _pair(object_model, scene_model, masks, "model_contrast_score")
    values = (a - b).masked_fill(~_valid(valid, len(a), "model_contrast_score"), float("nan"))
    return _result("model_contrast_score", values, object_model, {})


def input_dependence_rate(
    without_object: object, with_object: object, masks: Tensor, *, valid: Tensor | None = None
) -> MetricResult:
    """Input dependence rate: share of images whose region loses attribution when the object,
    a feature the model ignores, is pasted there.

    Parameters
    ----------
    without_object : Explanation or Tensor
        Maps of the scene-only images (``make_bam(...).scene_only``) by the scene model.
    with_object : Explanation or Tensor
        Maps of the same scenes with the object pasted (``.images``) by the same model.
    masks : Tensor
        ``(N, 1, H, W)`` boolean object masks (the same region is read in both maps).
    valid : Tensor or None, default=None
        ``(N,)`` bool: samples to score (BAM: both inputs classified correctly).

    Returns
    -------
    MetricResult
        Per sample 1.0 where the statistic without the object exceeds the one with it, else 0.0;
        the mean is the IDR. Higher is better.

    References
    ----------
    Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019.
    """
    a, b = _pair(without_object, with_object, masks, "input_dependence_rate")
    values = (a > b).double().masked_fill(a.isnan() | b.isnan(), float("nan"))
    values = values.masked_fill(~_valid(valid, len(a), "input_dependence_rate"), float("nan"))
    return _result("input_dependence_rate", values, with_object, {})


def input_independence_rate(
    without_patch: object,
    with_patch: object,
    masks: Tensor,
    *,
    tolerance: float = 0.1,
    valid: Tensor | None = None,
) -> MetricResult:
    """Input independence rate: share of images whose region statistic stays within
    ``tolerance`` of itself when a patch that leaves the model's output unchanged is added.

    Parameters
    ----------
    without_patch, with_patch : Explanation or Tensor
        Maps of the images without and with the functionally insignificant patch, same model.
    masks : Tensor
        ``(N, 1, H, W)`` boolean patch regions.
    tolerance : float, default=0.1
        Largest relative change counted as unchanged (BAM's 10 %), > 0.
    valid : Tensor or None, default=None
        ``(N,)`` bool: samples to score (e.g. those whose output the patch barely changed).

    Returns
    -------
    MetricResult
        Per sample 1.0 where ``|s(with) - s(without)| < tolerance * s(without)``, else 0.0; the
        mean is the IIR. Higher is better.

    References
    ----------
    Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019.
    """
    check_param(
        tolerance,
        "tolerance",
        "input_independence_rate",
        [Interval(float, 0, None, closed="neither")],
    )
    a, b = _pair(without_patch, with_patch, masks, "input_independence_rate")
    values = ((b - a).abs() < tolerance * a).double().masked_fill(a.isnan() | b.isnan(), torch.nan)
    values = values.masked_fill(~_valid(valid, len(a), "input_independence_rate"), float("nan"))
    return _result("input_independence_rate", values, with_patch, {"tolerance": tolerance})
