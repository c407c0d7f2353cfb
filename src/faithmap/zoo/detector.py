"""faithmap's built-in object detector: a small anchor-free network on a stride-8 grid.

Each cell of the stride-8 grid predicts, for one object whose box centre falls in the cell, the
centre's offset inside the cell, the box's width and height, and one sigmoid score per class
(the "objects as points" design of CenterNet, Zhou et al. 2019). The forward pass returns the
raw predictions of every cell in the layout of YOLO exports, ``(B, 4 + C, A)``: box centre,
width and height in input pixels, then the class scores in ``[0, 1]``. It is differentiable, so
gradient and CAM methods explain a chosen score; :meth:`ShapesDetector.detect` turns it into
per-image boxes with non-maximum suppression.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import nn

from faithmap.core.validation import check_float, check_int
from faithmap.errors import ShapeError
from faithmap.zoo.architectures import normalise

__all__ = ["STRIDE", "ShapesDetector", "box_iou", "cxcywh_to_xyxy", "decode", "nms", "postprocess"]

STRIDE: Final = 8
"""Input pixels per grid cell: an ``H x W`` input has ``ceil(H / 8) * ceil(W / 8)`` predictions."""
# Width and height are STRIDE * exp(t), t clamped to this range (0.15 to 55 cells).
_LOG_SIZE_RANGE: Final = 4.0


def _conv(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class ShapesDetector(nn.Module):
    """A small anchor-free detector (about 100k parameters) of :func:`make_shapes_scenes` shapes.

    Three stride-2 convolution blocks (16, 32 and 64 channels, each a 3 x 3 convolution, batch
    normalisation and ReLU) bring the input to stride 8. A fourth such block and a 3 x 3
    convolution with ReLU make ``features`` (64 channels), and the head is a 1 x 1 convolution
    to ``4 + C`` channels: each cell's predictions are a linear function of its feature vector,
    the setting of class activation maps, so ``features`` is the layer for CAM methods.

    Parameters
    ----------
    num_classes : int, default=6
        Number of classes ``C``.

    Attributes
    ----------
    features : nn.Sequential
        The ``(B, 64, ceil(H / 8), ceil(W / 8))`` map the head reads.
    cam_layer : str
        ``"features"``: the layer CAM methods use when not given one.
    input_size : int
        96: the side of the scenes the shipped weights were trained on. The network takes any
        size, but finds the shapes reliably only at about this scale (mAP@0.5 falls from 0.94
        to 0.45 on scenes drawn at 64 x 64), so bring images to it.
    head : nn.Conv2d
        The 1 x 1 convolution from ``features`` to the raw ``4 + C`` channels of each cell.

    Notes
    -----
    Cell ``(i, j)`` (row, column) is prediction ``a = i * ceil(W / 8) + j``. With raw head outputs
    ``t``: ``cx = 8 (j + sigmoid(t_0))``, ``cy = 8 (i + sigmoid(t_1))``,
    ``w = 8 exp(t_2)``, ``h = 8 exp(t_3)`` (``t_2, t_3`` clamped to ``[-4, 4]``), and class
    score ``k`` is ``sigmoid(t_{4+k})``.

    References
    ----------
    Zhou, Wang and Krähenbühl, "Objects as Points", arXiv:1904.07850, 2019; Redmon and Farhadi,
    "YOLO9000: Better, Faster, Stronger", CVPR 2017 (sigmoid cell offsets, exponential sizes);
    Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016 (CAM).

    Examples
    --------
    >>> detector = ShapesDetector().eval()
    >>> detector(torch.rand(2, 3, 96, 96)).shape
    torch.Size([2, 10, 144])
    """

    cam_layer = "features"
    input_size = 96

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", "ShapesDetector", low=1)
        self.backbone = nn.Sequential(
            _conv(3, 16, stride=2), _conv(16, 32, stride=2), _conv(32, 64, stride=2)
        )
        self.features = nn.Sequential(_conv(64, 64), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(64, 4 + num_classes, 1)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The head's raw ``(B, 4 + C, ceil(H / 8), ceil(W / 8))`` outputs, before decoding."""
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < STRIDE:
            raise ShapeError(
                f"ShapesDetector takes (B, 3, H, W) images with H, W >= {STRIDE}. Got a tensor "
                f"of shape {tuple(x.shape)} instead."
            )
        raw: torch.Tensor = self.head(self.features(self.backbone(normalise(x))))
        return raw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(B, 4 + C, A)``: ``cx, cy, w, h`` in pixels, then ``C`` scores in [0, 1]."""
        return decode(self.raw(x))

    @torch.no_grad()
    def detect(
        self,
        x: torch.Tensor,
        *,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.5,
    ) -> list[dict[str, torch.Tensor]]:
        """Detections of each image, after thresholding and class-wise non-maximum suppression.

        See :func:`postprocess` for the parameters and the result.
        """
        return postprocess(self(x), score_threshold=score_threshold, iou_threshold=iou_threshold)


def decode(raw: torch.Tensor) -> torch.Tensor:
    """Turn raw ``(B, 4 + C, h, w)`` head outputs into ``(B, 4 + C, h * w)`` boxes and scores."""
    batch, channels, height, width = raw.shape
    rows = torch.arange(height, device=raw.device, dtype=raw.dtype)[:, None]
    cols = torch.arange(width, device=raw.device, dtype=raw.dtype)[None, :]
    cx = (cols + raw[:, 0].sigmoid()) * STRIDE
    cy = (rows + raw[:, 1].sigmoid()) * STRIDE
    size = raw[:, 2:4].clamp(-_LOG_SIZE_RANGE, _LOG_SIZE_RANGE).exp() * STRIDE
    scores = raw[:, 4:].sigmoid()
    out = torch.cat([cx[:, None], cy[:, None], size, scores], dim=1)
    return out.reshape(batch, channels, height * width)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Convert ``(..., 4)`` boxes from centre, width, height to corners ``x0, y0, x1, y1``."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(N, M)`` intersection over union of ``(N, 4)`` and ``(M, 4)`` boxes ``x0, y0, x1, y1``.

    Empty boxes (zero area) have IoU 0 with everything.

    Examples
    --------
    >>> box_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
    tensor([[0.3333]])
    """
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low = torch.maximum(a[:, None, :2], b[None, :, :2])
    high = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(a.dtype).tiny), 0.0)


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices of the boxes kept, highest score first.

    Boxes are visited from the highest score down; a box is kept unless a kept box (of the same
    label, when `labels` are given) overlaps it with an IoU above `iou_threshold`.

    Parameters
    ----------
    boxes : torch.Tensor
        ``(K, 4)`` boxes ``x0, y0, x1, y1``.
    scores : torch.Tensor
        ``(K,)`` scores.
    iou_threshold : float
        Overlap above which the lower-scored box is dropped, in ``[0, 1]``.
    labels : torch.Tensor, optional
        ``(K,)`` class labels: boxes of different labels never suppress each other.

    Returns
    -------
    torch.Tensor
        int64 indices into `boxes`, by decreasing score.
    """
    iou_threshold = check_float(iou_threshold, "iou_threshold", "nms", low=0.0, high=1.0)
    order = scores.argsort(descending=True, stable=True)
    overlaps = box_iou(boxes[order], boxes[order]) > iou_threshold
    if labels is not None:
        overlaps &= labels[order][:, None] == labels[order][None, :]
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= overlaps[i].cpu()
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def postprocess(
    output: torch.Tensor, *, score_threshold: float = 0.3, iou_threshold: float = 0.5
) -> list[dict[str, torch.Tensor]]:
    """Per-image detections from a ``(B, 4 + C, A)`` output laid out as :class:`ShapesDetector`'s.

    Each prediction takes its best class; those scoring at least `score_threshold` go through
    class-wise :func:`nms`.

    Parameters
    ----------
    output : torch.Tensor
        ``(B, 4 + C, A)``: ``cx, cy, w, h`` in pixels, then ``C`` class scores.
    score_threshold : float, default=0.3
        Lowest class score kept, in ``[0, 1]``.
    iou_threshold : float, default=0.5
        IoU above which :func:`nms` drops the lower-scored of two boxes of one class.

    Returns
    -------
    list of dict
        One dict per image, torchvision's detection format: ``boxes`` ``(K, 4)`` float
        ``x0, y0, x1, y1`` in pixels, ``scores`` ``(K,)`` and ``labels`` ``(K,)`` int64, by
        decreasing score.
    """
    if output.ndim != 3 or output.shape[1] < 5:
        raise ShapeError(
            "postprocess takes a (B, 4 + C, A) detector output with C >= 1. Got a tensor of "
            f"shape {tuple(output.shape)} instead."
        )
    score_threshold = check_float(
        score_threshold, "score_threshold", "postprocess", low=0.0, high=1.0
    )
    results = []
    for pred in output.detach():
        scores, labels = pred[4:].max(dim=0)
        chosen = (scores >= score_threshold).nonzero().squeeze(1)
        boxes = cxcywh_to_xyxy(pred[:4, chosen].T)
        keep = nms(boxes, scores[chosen], iou_threshold, labels[chosen])
        results.append(
            {"boxes": boxes[keep], "scores": scores[chosen][keep], "labels": labels[chosen][keep]}
        )
    return results
