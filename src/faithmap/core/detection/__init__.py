"""A detector's outputs as boxes and class scores, and the targets that explain one object.

A detector returns its predictions in one of a few layouts; an *adapter* reads them as
:class:`Detections`, boxes ``(B, A, 4)`` as ``(x0, y0, x1, y1)`` in pixels and class scores
``(B, A, C)`` in [0, 1] for ``A`` predictions (anchors, queries or kept boxes) per image:

* :class:`YoloAdapter`: raw YOLO-style tensors ``(B, 4 + C, A)``, boxes ``(cx, cy, w, h)`` in
  the pixels the network sees, then class scores; ``(B, 4 + 1 + C, A)`` with an objectness.
* :class:`TorchvisionAdapter`: one dict per image with ``boxes`` (xyxy), ``scores``, ``labels``.
* :class:`HuggingFaceAdapter`: ``transformers`` object-detection outputs, ``logits`` and
  ``pred_boxes`` (normalised ``cx, cy, w, h``); DETR and YOLOS by a softmax whose last class
  is "no object", OWL-ViT, Grounding DINO and the focal-loss DETRs by a sigmoid per query.

:class:`BoxTarget` scores each row by its best match to a reference box and class,
``max_a IoU(b_a, b) * s_a[k]``, the object score of VPS (and the form of pytorch-grad-cam's
box-score target); :class:`SegmentationTarget` is the mean score of a class over a mask. Both
are callable targets (:mod:`faithmap.core.targets`), differentiable where the model is.
Models that return dicts or lists reach them as they are (:func:`structured_output`).

References
----------
Chen et al., "Interpreting Object-level Foundation Models via Visual Precision Search", CVPR 2025.
Petsiuk et al., "Black-box Explanation of Object Detectors via Saliency Maps", CVPR 2021.
"""

from faithmap.core.detection.adapters import (
    YOLO,
    Adapter,
    Box,
    Detection,
    Detections,
    HuggingFaceAdapter,
    TorchvisionAdapter,
    YoloAdapter,
    box_iou,
    infer_adapter,
)
from faithmap.core.detection.picking import PickedBox, pick_boxes
from faithmap.core.detection.targets import BoxTarget, SegmentationTarget, box_targets

__all__ = [
    "YOLO",
    "Adapter",
    "Box",
    "BoxTarget",
    "Detection",
    "Detections",
    "HuggingFaceAdapter",
    "PickedBox",
    "SegmentationTarget",
    "TorchvisionAdapter",
    "YoloAdapter",
    "box_iou",
    "box_targets",
    "infer_adapter",
    "pick_boxes",
]
