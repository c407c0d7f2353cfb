"""Targets of one object: a box and class (:class:`BoxTarget`), a class over a mask.

References
----------
Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search", CVPR 2025.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.constraints import Interval, check_param
from faithmap.core.detection.adapters import YOLO, Adapter, Box, box_iou
from faithmap.errors import InvalidParameterError, ShapeError, TargetError

IOU_THRESHOLD = [None, Interval(float, 0.0, 1.0, closed="left")]
"""The constraint of an ``iou_threshold``: ``None`` (the IoU itself) or a float in [0, 1)."""


def check_box(value: object, owner: str) -> Box:
    """``value`` as a :data:`~faithmap.core.detection.adapters.Box`, or an error saying what a
    box is (four finite numbers, top-left corner first)."""
    numbers: list[float] = []
    if isinstance(value, Tensor | Sequence) and not isinstance(value, str):
        try:
            numbers = [float(v) for v in value]
        except (TypeError, ValueError):
            numbers = []
    if len(numbers) != 4 or not all(map(math.isfinite, numbers)):
        raise InvalidParameterError(
            f"The 'box' parameter of {owner} must be four finite numbers (x0, y0, x1, y1) in "
            f"pixels. Got {value!r} instead."
        )
    x0, y0, x1, y1 = numbers
    if x1 <= x0 or y1 <= y0:
        raise InvalidParameterError(
            f"The 'box' parameter of {owner} must have x0 < x1 and y0 < y1 (its top-left "
            f"corner first). Got {tuple(numbers)} instead."
        )
    return x0, y0, x1, y1


def check_label(value: object, owner: str) -> int:
    """``value`` as a class index, or an error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(
            f"The 'label' parameter of {owner} must be a class index, an int >= 0. Got "
            f"{value!r} instead."
        )
    return value


@dataclass(frozen=True)
class BoxTarget:
    """The score of one object: ``max_a IoU(b_a, box) * s_a[label]`` over the predictions.

    A callable target: it reads each row of the model's raw outputs through ``adapter`` and
    scores the prediction that best matches the reference ``box`` (xyxy pixels) and class
    ``label``, so an explanation follows that object wherever the detector puts its box.
    Differentiable where the model is (the maximum passes the gradient to the best match).
    Methods reading probabilities need ``activation="logits"`` to hand it the raw outputs.

    With ``iou_threshold=t`` the IoU is replaced by ``1[IoU > t]``: a row scores
    ``max_a 1[IoU(b_a, box) > t] * s_a[label]``, the class score of the best prediction that
    finds the box (VPS's mode ``cls`` and its highest-confidence protocol, ``t = 0.5``); 0
    when no prediction overlaps the box by more than ``t``. The gradient reaches that
    prediction's class score, not its box.

    References
    ----------
    Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search",
    CVPR 2025 (the clue score, modes ``object`` and ``cls``).

    Examples
    --------
    >>> raw = torch.tensor([[[5.0, 15.0], [5.0, 15.0], [10.0, 10.0], [10.0, 10.0], [0.9, 0.2]]])
    >>> BoxTarget(box=(0, 0, 10, 10), label=0)(raw)  # anchor 0 matches exactly, score 0.9
    tensor([0.9000])
    >>> BoxTarget(box=(0, 0, 10, 15), label=0, iou_threshold=0.5)(raw)  # IoU 2/3 > 0.5
    tensor([0.9000])
    """

    box: Box
    label: int
    adapter: Adapter = YOLO
    iou_threshold: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", check_box(self.box, "BoxTarget"))
        check_label(self.label, "BoxTarget")
        check_param(self.iou_threshold, "iou_threshold", "BoxTarget", IOU_THRESHOLD)
        if self.iou_threshold is not None:
            object.__setattr__(self, "iou_threshold", float(self.iou_threshold))
        if not callable(self.adapter):
            raise InvalidParameterError(
                "The 'adapter' parameter of BoxTarget must be a callable reading the model's "
                f"outputs as Detections. Got {type(self.adapter).__name__} instead."
            )

    def __call__(self, output: Any) -> Tensor:
        detections = self.adapter(output)
        scores = detections.class_scores(self.label)
        reference = torch.tensor(self.box, dtype=scores.dtype, device=scores.device)
        overlap = box_iou(detections.boxes.to(scores.dtype), reference)
        if self.iou_threshold is not None:
            overlap = (overlap > self.iou_threshold).to(scores.dtype)
        return (overlap * scores).amax(dim=1)


def box_targets(
    boxes: Sequence[Sequence[float]] | Tensor,
    labels: Sequence[int] | Tensor,
    *,
    adapter: Adapter = YOLO,
    iou_threshold: float | None = None,
) -> list[BoxTarget]:
    """One :class:`BoxTarget` per image: ``boxes`` ``(N, 4)`` xyxy and ``labels`` ``(N,)``."""
    label_list = labels.tolist() if isinstance(labels, Tensor) else list(labels)
    box_list = boxes.tolist() if isinstance(boxes, Tensor) else list(boxes)
    if len(box_list) != len(label_list):
        raise InvalidParameterError(
            f"box_targets needs one label per box. Got {len(box_list)} boxes and "
            f"{len(label_list)} labels instead."
        )
    return [
        BoxTarget(box=tuple(box), label=label, adapter=adapter, iou_threshold=iou_threshold)
        for box, label in zip(box_list, label_list, strict=True)
    ]


@dataclass(frozen=True, eq=False)
class SegmentationTarget:
    """The mean score of class ``label`` over ``mask`` for segmentation outputs ``(B, C, H, W)``.

    ``mask`` is ``(H, W)`` (or ``(1, H, W)``) of non-negative weights at the outputs'
    resolution, a boolean mask included. With ``softmax=True`` the scores are the class
    probabilities at each pixel, else the raw outputs (the methods' ``activation="logits"``).

    References
    ----------
    Vinogradova, Dibrov, Myers, "Towards Interpretable Semantic Segmentation via Gradient-
    Weighted Class Activation Mapping", AAAI 2020 (Seg-Grad-CAM: a class summed over a region).
    """

    label: int
    mask: Tensor
    softmax: bool = False

    def __post_init__(self) -> None:
        check_label(self.label, "SegmentationTarget")
        mask = self.mask
        if isinstance(mask, Tensor) and mask.dim() == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if not isinstance(mask, Tensor) or mask.dim() != 2:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ShapeError(
                f"The 'mask' of SegmentationTarget must be an (H, W) tensor. Got {got} instead."
            )
        weights = mask.detach().double()
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ShapeError("The 'mask' of SegmentationTarget must hold finite weights >= 0.")
        if not float(weights.sum()) > 0:
            raise ShapeError(
                "The 'mask' of SegmentationTarget is empty: mark at least one pixel of the region."
            )
        object.__setattr__(self, "mask", mask.detach())

    def __call__(self, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 4:
            got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise TargetError(
                "A segmentation target reads (B, C, H, W) class scores per pixel. Got "
                f"{got} instead."
            )
        if self.label >= output.shape[1] or tuple(output.shape[2:]) != tuple(self.mask.shape):
            raise TargetError(
                f"A segmentation target of class {self.label} over a {tuple(self.mask.shape)} "
                f"mask cannot read outputs of shape {tuple(output.shape)}: the label must be "
                "below C and the mask must have the outputs' (H, W) (resize it to that size)."
            )
        scores = output.softmax(1) if self.softmax else output
        weights = self.mask.to(device=output.device, dtype=scores.dtype)
        return (scores[:, self.label] * weights).sum((1, 2)) / weights.sum()
