"""Adapters: a detector's raw outputs read as boxes and class scores (:class:`Detections`).

Boxes are ``(B, A, 4)`` as ``(x0, y0, x1, y1)`` in pixels and class scores ``(B, A, C)`` in
[0, 1] for ``A`` predictions (anchors, queries or kept boxes) per image.

References
----------
Redmon and Farhadi, "YOLOv3: An Incremental Improvement", arXiv 2018.
Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.errors import InvalidParameterError, TargetError

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels, ``x0 < x1`` and ``y0 < y1``."""

SOFTMAX_DETECTORS = ("Detr", "Yolos", "TableTransformer")
"""``transformers`` detectors whose ``logits`` are read by a softmax, last class "no object"."""
SIGMOID_DETECTORS = (
    "ConditionalDetr",
    "DeformableDetr",
    "RTDetr",
    "RTDetrV2",
    "GroundingDino",
    "MMGroundingDino",
    "OwlViT",
    "Owlv2",
)
"""``transformers`` detectors whose ``logits`` are read by a sigmoid per query (and token)."""


def _xyxy(centres: Tensor) -> Tensor:
    """``(..., 4)`` boxes ``(cx, cy, w, h)`` as ``(x0, y0, x1, y1)``."""
    cx, cy, w, h = centres.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def box_iou(boxes: Tensor, reference: Tensor) -> Tensor:
    """IoU of each box of ``boxes`` ``(..., 4)`` with one ``reference`` box ``(4,)``, xyxy.

    A box with ``x1 < x0`` or ``y1 < y0`` has no area; the reference must have some.
    """
    low = torch.maximum(boxes[..., :2], reference[:2])
    high = torch.minimum(boxes[..., 2:], reference[2:])
    inter = (high - low).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    reference_area = (reference[2:] - reference[:2]).prod()
    return inter / (area + reference_area - inter)


class Detection(NamedTuple):
    """One prediction: its box (xyxy pixels), its best class and that class's score."""

    box: Box
    label: int
    score: float


@dataclass(frozen=True)
class Detections:
    """Boxes ``(B, A, 4)`` (xyxy pixels) and class scores ``(B, A, C)`` of ``A`` predictions."""

    boxes: Tensor
    scores: Tensor

    def class_scores(self, label: int) -> Tensor:
        """``(B, A)`` the score of class ``label`` of every prediction."""
        classes = self.scores.shape[-1]
        if not 0 <= label < classes:
            raise TargetError(
                f"The label {label} is not a class of the detector, which scores {classes} "
                f"classes: give a label in [0, {classes - 1}]."
            )
        return self.scores[..., label]

    def ranked(self, sample: int, *, overlap: float = 0.5) -> list[Detection]:
        """The predictions of image ``sample`` by their best class score, highest first.

        Left out: predictions scoring 0, boxes without area (no box can be matched to them),
        and a prediction that overlaps a higher-ranked one of the same class by an IoU above
        ``overlap`` (non-maximum suppression), so each object appears once however many
        anchors see it.
        """
        best, labels = self.scores[sample].detach().max(dim=-1)
        boxes = self.boxes[sample].detach()
        kept: list[Detection] = []
        for index in best.argsort(descending=True).tolist():
            score, label = float(best[index]), int(labels[index])
            if not score > 0.0:
                break
            box = boxes[index]
            if not bool((box[2:] > box[:2]).all()) or any(
                other.label == label and float(box_iou(box, box.new_tensor(other.box))) > overlap
                for other in kept
            ):
                continue
            x0, y0, x1, y1 = box.tolist()
            kept.append(Detection((x0, y0, x1, y1), label, score))
        return kept


Adapter = Callable[[Any], Detections]
"""Reads a detector's raw outputs of a batch as :class:`Detections`."""


def _field(output: object, name: str) -> object:
    """``output[name]`` of a mapping (a ``ModelOutput``), else the attribute; ``None`` if absent."""
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


@dataclass(frozen=True)
class YoloAdapter:
    """Raw YOLO-style outputs ``(B, 4 + C, A)``: per anchor ``cx, cy, w, h`` then class scores.

    With ``objectness=True`` the layout is ``(B, 4 + 1 + C, A)`` and each class score is
    multiplied by the anchor's objectness, as YOLOv3-v5 score their boxes. Scores are read as
    given (in [0, 1] already); boxes are in the pixels of the network's input.

    References
    ----------
    Redmon and Farhadi, "YOLOv3: An Incremental Improvement", arXiv 2018.
    """

    objectness: bool = False

    def __call__(self, output: Any) -> Detections:
        first = 5 if self.objectness else 4
        if not isinstance(output, Tensor) or output.dim() != 3 or output.shape[1] <= first:
            layout = "(B, 4 + 1 + C, A)" if self.objectness else "(B, 4 + C, A)"
            got = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise TargetError(
                f"A YOLO-style detector's outputs have shape {layout}: a box (cx, cy, w, h) "
                f"{'and an objectness ' if self.objectness else ''}then at least one class "
                f"score per anchor. Got {got} instead; choose the adapter of your detector's "
                "outputs (TorchvisionAdapter, HuggingFaceAdapter, or objectness=...)."
            )
        rows = output.transpose(1, 2)
        scores = rows[..., first:]
        if self.objectness:
            scores = scores * rows[..., 4:5]
        return Detections(_xyxy(rows[..., :4]), scores)


YOLO = YoloAdapter()
"""The adapter of raw ``(B, 4 + C, A)`` outputs without objectness (faithmap's own detector)."""


@dataclass(frozen=True)
class TorchvisionAdapter:
    """torchvision-style outputs: one dict per image with ``boxes`` ``(n, 4)`` xyxy in pixels,
    ``scores`` ``(n,)`` and ``labels`` ``(n,)``; images with fewer boxes are padded with
    zero-score boxes. ``num_classes`` sizes the class axis (torchvision's COCO models: 91).

    References
    ----------
    Ren, He, Girshick, Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
    Proposal Networks", NeurIPS 2015.
    """

    num_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise InvalidParameterError(
                "The 'num_classes' parameter of TorchvisionAdapter must be an int >= 1. Got "
                f"{self.num_classes!r} instead."
            )
        if self.num_classes < 1:
            raise InvalidParameterError(
                "The 'num_classes' parameter of TorchvisionAdapter must be an int >= 1. Got "
                f"{self.num_classes} instead."
            )

    def __call__(self, output: Any) -> Detections:
        if not is_torchvision_output(output):
            raise TargetError(
                "torchvision-style detections are a list with one dict per image holding "
                f"'boxes', 'scores' and 'labels' tensors. Got {type(output).__name__} instead; "
                "choose the adapter of your detector's outputs."
            )
        count = max(1, *(int(image["scores"].shape[0]) for image in output))
        boxes, scores = [], []
        for image in output:
            labels, found = image["labels"].long(), image["scores"]
            if (
                labels.numel()
                and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes
            ):
                raise TargetError(
                    f"The detector predicted labels {sorted(set(labels.tolist()))}, outside the "
                    f"{self.num_classes} classes TorchvisionAdapter was given; pass its "
                    "num_classes."
                )
            missing = count - found.shape[0]
            one_hot = F.one_hot(labels, self.num_classes).to(found.dtype) * found.unsqueeze(1)
            boxes.append(F.pad(image["boxes"].to(found.dtype), (0, 0, 0, missing)))
            scores.append(F.pad(one_hot, (0, 0, 0, missing)))
        return Detections(torch.stack(boxes), torch.stack(scores))


def is_torchvision_output(output: object) -> bool:
    """Whether ``output`` is a non-empty list of dicts with boxes, scores and labels."""
    return (
        isinstance(output, list | tuple)
        and len(output) > 0
        and all(
            isinstance(image, Mapping)
            and all(isinstance(image.get(key), Tensor) for key in ("boxes", "scores", "labels"))
            for image in output
        )
    )


@dataclass(frozen=True)
class HuggingFaceAdapter:
    """``transformers`` object-detection outputs: ``logits`` ``(B, Q, K)`` and ``pred_boxes``
    ``(B, Q, 4)``, normalised ``(cx, cy, w, h)``, scaled to ``image_size`` ``(height, width)``.

    ``activation="softmax"`` (DETR, YOLOS) drops the last, "no object" class;
    ``"sigmoid"`` (OWL-ViT, Grounding DINO, Deformable DETR) reads each column on its own. For
    a grounding model, ``token_groups`` gives the text tokens of each phrase: a phrase's score
    is the highest probability of its tokens, as VPS reads Grounding DINO.

    References
    ----------
    Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020.
    Minderer et al., "Simple Open-Vocabulary Object Detection with Vision Transformers", ECCV 2022.
    """

    image_size: tuple[int, int]
    activation: Literal["softmax", "sigmoid"] = "softmax"
    token_groups: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        size = self.image_size
        if not (
            isinstance(size, tuple)
            and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise InvalidParameterError(
                "The 'image_size' parameter of HuggingFaceAdapter must be a (height, width) "
                f"pair of positive ints. Got {size!r} instead."
            )
        if self.activation not in ("softmax", "sigmoid"):
            raise InvalidParameterError(
                "The 'activation' parameter of HuggingFaceAdapter must be 'softmax' (DETR, "
                f"YOLOS) or 'sigmoid' (OWL-ViT, Grounding DINO). Got {self.activation!r} instead."
            )
        if self.token_groups is not None and not all(len(group) > 0 for group in self.token_groups):
            raise InvalidParameterError(
                "Each of the 'token_groups' of HuggingFaceAdapter must hold at least one token "
                f"index. Got {self.token_groups!r} instead."
            )

    def __call__(self, output: Any) -> Detections:
        logits, centres = _field(output, "logits"), _field(output, "pred_boxes")
        if not (
            isinstance(logits, Tensor)
            and isinstance(centres, Tensor)
            and logits.dim() == 3
            and centres.shape == (*logits.shape[:2], 4)
        ):
            raise TargetError(
                "A Hugging Face detector's outputs hold 'logits' (B, Q, K) and 'pred_boxes' "
                f"(B, Q, 4). Got {type(output).__name__} without them; load the model with its "
                "detection head (AutoModelForObjectDetection) or choose another adapter."
            )
        if self.activation == "softmax":
            probabilities = logits.softmax(-1)[..., :-1]
        else:
            probabilities = logits.sigmoid()
        if self.token_groups is not None:
            tokens = probabilities.shape[-1]
            if max(max(group) for group in self.token_groups) >= tokens:
                raise TargetError(
                    f"The token_groups name tokens beyond the detector's {tokens} text positions."
                )
            probabilities = torch.stack(
                [probabilities[..., list(group)].amax(-1) for group in self.token_groups], -1
            )
        height, width = self.image_size
        scale = centres.new_tensor([width, height, width, height])
        return Detections(_xyxy(centres * scale), probabilities)


def infer_adapter(
    output: object, *, image_size: tuple[int, int], objectness: bool = False
) -> Adapter:
    """The adapter of a detector's raw ``output`` for images of ``image_size`` (height, width).

    A 3-D tensor is YOLO-style (with an objectness row if ``objectness``); a list of dicts is
    torchvision-style (its classes sized by the largest label it holds, since the list does
    not say how many the model has); a Hugging Face output is read by the activation its
    model was trained with. Anything else raises a :class:`TargetError`.
    """
    if isinstance(output, Tensor):
        if output.dim() == 3:
            return YoloAdapter(objectness=objectness)
        raise TargetError(
            f"The model's outputs have shape {tuple(output.shape)}, not a detector's: a box "
            "target reads YOLO-style (B, 4 + C, A) tensors, one dict per image (boxes, scores, "
            "labels) or a Hugging Face detector's logits and pred_boxes."
        )
    if is_torchvision_output(output):
        assert isinstance(output, list | tuple)  # checked just above
        labels = [int(image["labels"].max()) for image in output if image["labels"].numel()]
        return TorchvisionAdapter(num_classes=1 + max(labels, default=0))
    model = type(output).__name__.removesuffix("ObjectDetectionOutput")
    if isinstance(_field(output, "pred_boxes"), Tensor):
        if model in SOFTMAX_DETECTORS:
            return HuggingFaceAdapter(image_size, "softmax")
        if model in SIGMOID_DETECTORS:
            return HuggingFaceAdapter(image_size, "sigmoid")
    raise TargetError(
        f"The model returns {type(output).__name__}, which faithmap cannot read as detections. "
        f"Hugging Face detectors it knows: {', '.join(SOFTMAX_DETECTORS + SIGMOID_DETECTORS)}; "
        "for another, pass HuggingFaceAdapter(image_size, activation=...) or your own adapter "
        "(a callable returning Detections)."
    )
