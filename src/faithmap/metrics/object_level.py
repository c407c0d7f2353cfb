"""Object-level metrics: explanations of one detection, scored against its box and its score.

* Insertion and deletion of the box score are :func:`~faithmap.metrics.curves.insertion` and
  :func:`~faithmap.metrics.curves.deletion` themselves: they score the callable target the
  explanation was made for (a :class:`~faithmap.core.detection.BoxTarget`, say) on each
  perturbed image. Pass ``activation="logits"`` so that the target reads the detector's raw
  outputs (``params={"insertion": {"activation": "logits"}}`` in :func:`faithmap.evaluate`).
* :func:`box_energy_pointing_game`: the share of the map's energy inside the reference box.
* :func:`highest_box_confidence`: VPS's protocol for missed or misclassified detections, the
  highest score of the object reached while keeping at most a fraction of the image.

A pixel is inside a box ``(x0, y0, x1, y1)`` when its centre is: ``x0 <= col + 0.5 < x1`` and
``y0 <= row + 0.5 < y1``, so an integer box covers the pixels ``[y0:y1, x0:x1]`` as in the
reference code.

References
----------
Chen, Liang, Li, Huang, Lin et al., "Interpreting Object-level Foundation Models via Visual
Precision Search", CVPR 2025 (``evals/eval_energy_pg.py``, ``evals/eval_AUC_faithfulness.py``).
Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
Networks", CVPR Workshops 2020 (energy-based pointing game).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.constraints import SEED, Interval, Satisfies, options
from faithmap.core.cost import Cost
from faithmap.core.detection.targets import IOU_THRESHOLD, BoxTarget, check_box
from faithmap.core.explanation import Explanation
from faithmap.core.metric import MetricResult, prepare, read_map
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_metric
from faithmap.core.removal import FILL_OR_REMOVAL, FillLike, Removal
from faithmap.core.targets import TARGET, TargetLike
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics.curves import insertion
from faithmap.metrics.localization import Energy, energy_pointing_game

BoxesLike = Tensor | Sequence[Sequence[float]]
"""Boxes ``(N, 4)`` as ``(x0, y0, x1, y1)`` in pixels: a tensor or one row per sample."""


def _is_boxes(value: object) -> bool:
    if isinstance(value, Tensor):
        return value.dim() == 2 and value.shape[1] == 4
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(isinstance(row, Sequence | Tensor) and len(row) == 4 for row in value)
    )


BOXES = [
    None,
    Satisfies(
        _is_boxes,
        "boxes (N, 4) as (x0, y0, x1, y1) in pixels, a tensor or one 4-number row per sample",
        invalid="not boxes",
    ),
]
"""The constraint of a ``boxes`` parameter (``None``: the boxes of the explained targets)."""


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean masks ``(N, 1, H, W)``: the pixels whose centre lies in each box ``(N, 4)``."""
    centres_x = torch.arange(width, dtype=torch.float64, device=boxes.device) + 0.5
    centres_y = torch.arange(height, dtype=torch.float64, device=boxes.device) + 0.5
    x0, y0, x1, y1 = boxes.double().unbind(1)
    inside_x = (centres_x[None, :] >= x0[:, None]) & (centres_x[None, :] < x1[:, None])
    inside_y = (centres_y[None, :] >= y0[:, None]) & (centres_y[None, :] < y1[:, None])
    return (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1)


def explained_boxes(explanation: object, boxes: BoxesLike | None, n: int, owner: str) -> Tensor:
    """The reference boxes ``(N, 4)``: ``boxes`` if given, else those of the box targets the
    explanation was made for (a target with a ``box``, one for all samples or one each)."""
    if boxes is None:
        score = explanation.score if isinstance(explanation, Explanation) else None
        functions = score if isinstance(score, tuple) else (score,) * n
        rows = [getattr(function, "box", None) for function in functions]
        if score is None or any(row is None for row in rows):
            raise InvalidParameterError(
                f"{owner} needs the reference box of each sample: the explanation was not made "
                "for a box target (BoxTarget), so pass boxes=(N, 4) as (x0, y0, x1, y1) in "
                "pixels."
            )
    else:
        rows = boxes.tolist() if isinstance(boxes, Tensor) else list(boxes)
    if len(rows) != n:
        raise ShapeError(f"{owner} needs one box per sample ({n}). Got {len(rows)} boxes instead.")
    checked = [check_box(row, owner) for row in rows]
    return torch.tensor(checked, dtype=torch.float64)


@register_metric(
    "box_energy_pointing_game",
    constraints={"boxes": BOXES, "part": [options(("positive", "absolute", "minmax"))]},
    higher_is_better=True,
)
def box_energy_pointing_game(
    explanation: Explanation | Tensor,
    *,
    boxes: BoxesLike | None = None,
    part: Energy = "minmax",
) -> MetricResult:
    """Share of the map's energy inside the reference box of each sample.

    ``sum over the box of a' / sum of a'``, with ``a' = a - min(a)`` by default: VPS's
    evaluation min-max normalises every map before summing (the division cancels). NaN for a
    box that covers no pixel centre or a map without energy.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, 1 or C, H, W)`` (channels summed).
    boxes : Tensor, sequence of boxes or None, default=None
        ``(N, 4)`` reference boxes ``(x0, y0, x1, y1)`` in pixels; ``None``: the boxes of the
        :class:`~faithmap.core.detection.BoxTarget` (or one per sample) the explanation was
        made for.
    part : {"minmax", "positive", "absolute"}, default="minmax"
        The energy: ``a - min(a)``, ``max(a, 0)`` (Score-CAM's pointing game) or ``|a|``.

    References
    ----------
    Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search",
    CVPR 2025.

    Examples
    --------
    >>> import torch
    >>> maps = torch.tensor([[[[3.0, 1.0], [0.0, 4.0]]]])
    >>> box_energy_pointing_game(maps, boxes=[[0, 0, 2, 1]], part="positive").values
    tensor([0.5000])
    """
    owner = "box_energy_pointing_game"
    maps = read_map(explanation, owner)
    rows = explained_boxes(explanation, boxes, maps.shape[0], owner).to(maps.device)
    masks = box_masks(rows, maps.shape[1], maps.shape[2])
    result = energy_pointing_game(explanation, masks, part=part)
    given = "given" if boxes is not None else "explained"
    return dataclasses.replace(
        result, metric=owner, choices={**result.choices, "boxes": given, "inside": "centre"}
    )


PIXEL_CHOICES = ("fill", "steps", "seed", "target")
"""The choices of the pixel insertion path that :func:`highest_box_confidence` records."""


@dataclass(frozen=True, kw_only=True)
class HighestConfidenceResult(MetricResult):
    """The highest score of the object within the area budget, per sample (``values``).

    Attributes
    ----------
    area : Tensor
        ``(N,)`` fraction of the image kept where that score is reached.
    """

    area: Tensor


def _as_tuple(target: TargetLike) -> tuple[object, ...]:
    return tuple(target) if isinstance(target, Sequence) else (target,)


def thresholded(target: TargetLike, iou_threshold: float | None, owner: str) -> TargetLike:
    """``target``'s box targets scoring ``1[IoU > iou_threshold] * class score``; ``target``
    itself when ``iou_threshold`` is None. Anything but box targets is an error."""
    if iou_threshold is None:
        return target
    functions = _as_tuple(target)
    boxes = [f for f in functions if isinstance(f, BoxTarget)]
    if not functions or len(boxes) != len(functions):
        what = "missing (a bare map)" if target is None else type(target).__name__
        raise InvalidParameterError(
            f"{owner} scores a BoxTarget with its IoU thresholded at iou_threshold="
            f"{iou_threshold} (VPS's protocol), but the target is {what}, not a BoxTarget "
            "or one per sample: explain with BoxTargets, or pass iou_threshold=None to score "
            "the target as it is."
        )
    scored = [dataclasses.replace(f, iou_threshold=iou_threshold) for f in boxes]
    return scored if isinstance(target, Sequence) else scored[0]


@register_metric(
    "highest_box_confidence",
    constraints={
        "target": TARGET,
        "budget": [Interval(float, 0.0, 1.0, closed="right")],
        "fill": FILL_OR_REMOVAL,
        "steps": [Interval(int, 1)],
        "seed": [SEED],
        "activation": [ACTIVATION],
        "iou_threshold": IOU_THRESHOLD,
    },
    higher_is_better=True,
    constant_model="score",
)
def highest_box_confidence(
    model: Model | nn.Module | Callable[[Tensor], Any],
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    target: TargetLike = None,
    budget: float = 1.0,
    fill: FillLike | Removal = 0.0,
    steps: int = 49,
    seed: int = 0,
    activation: Activation = "logits",
    iou_threshold: float | None = 0.5,
) -> HighestConfidenceResult:
    """Highest score of the object reached while keeping at most ``budget`` of the image.

    VPS's protocol for missed and misclassified detections: explain the object the detector
    got wrong (its true box and class) and ask how confident the detector becomes when shown
    only the explanation's most important part. The score is the reference's
    ``max_q 1[IoU(b_q, box) > 0.5] * s_q[label]``: the explained (or given) box targets with
    their IoU thresholded at ``iou_threshold`` (:class:`~faithmap.core.detection.BoxTarget`'s
    ``iou_threshold``). Points of the insertion path keeping at most a fraction ``budget`` of
    the image (the empty image included, as the reference's curve starts there) are searched
    for the highest score. An explanation whose search recorded insertion and area curves for
    that very score (VPS or SMDL explaining ``BoxTarget(..., iou_threshold=0.5)``, or any
    callable target with ``iou_threshold=None``) is read as recorded, on whole regions with
    their true area, without a model pass; any other map is scored on a pixel insertion path
    of ``steps`` points into ``fill``.

    Parameters
    ----------
    model, inputs
        The detector and its images ``(N, C, H, W)``.
    explanation : Explanation or Tensor
        The explanation of each image's object.
    target : None, int, tensor or callable
        ``None``: the explanation's target (its box target).
    budget : float, default=1.0
        Largest fraction of the image kept, in ``(0, 1]``; 1 is the reference's evaluation
        (the whole curve); LiMA reports 0.25, 0.5 and 0.75 too.
    fill : str, float, callable or Removal, default=0.0
        What the pixel path inserts into (the reference: black).
    steps : int, default=49
        Points of the pixel path minus one (the reference's baselines: 49 steps).
    seed : int, default=0
        Tie-break seed of the pixel ranking.
    activation : {"logits", "softmax", "log_odds"}, default="logits"
        ``"logits"`` hands the detector's raw outputs to a box target.
    iou_threshold : float or None, default=0.5
        The IoU a prediction must exceed to count, VPS's 0.5; the target must then be box
        targets. ``None`` scores the target as it is (``IoU * class score`` for a plain
        ``BoxTarget``, or any callable).

    References
    ----------
    Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search",
    CVPR 2025 (average highest confidence on misclassified and missed objects).
    """
    owner = "highest_box_confidence"
    explained = explanation.score if isinstance(explanation, Explanation) else None
    scored = thresholded(explained if target is None else target, iou_threshold, owner)
    prepared = prepare(owner, model, inputs, explanation, scored, image=True)
    curves = explanation.curves if isinstance(explanation, Explanation) else {}
    recorded = (
        explained is not None
        and (scored is None or _as_tuple(scored) == _as_tuple(explained))
        and activation == "logits"
        and "insertion" in curves
        and "area" in curves
    )
    if recorded:
        curve, area = curves["insertion"].double(), curves["area"].double()
        cost, classes = Cost(), None
        path: dict[str, object] = {"path": "recorded", "target": prepared.rule}
    else:
        result = insertion(
            model,
            inputs,
            explanation,
            target=scored,
            fill=fill,
            steps=steps,
            seed=seed,
            activation=activation,
        )
        curve = result.curve.double()
        area = result.fractions.double().expand_as(curve)
        cost, classes = result.cost, result.target
        path = {"path": "pixels", **{key: result.choices[key] for key in PIXEL_CHOICES}}
    masked = curve.masked_fill(area > budget + 1e-9, -math.inf)
    best = masked.argmax(1, keepdim=True)
    home = prepared.home
    return HighestConfidenceResult(
        metric=owner,
        values=masked.gather(1, best).squeeze(1).to(home),
        area=area.gather(1, best).squeeze(1).to(home),
        higher_is_better=True,
        target=classes,
        choices={
            "budget": budget,
            "activation": activation,
            "iou_threshold": iou_threshold,
            **path,
        },
        cost=cost,
    )
