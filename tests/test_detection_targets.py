"""Box and segmentation targets: hand-computed IoU x score, adapters, structured outputs in
``Model``, and gradient, CAM and perturbation methods explaining one detection."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import faithmap
from faithmap.core.detection import (
    BoxTarget,
    Detections,
    SegmentationTarget,
    TorchvisionAdapter,
    YoloAdapter,
    box_iou,
    box_targets,
    pick_boxes,
)
from faithmap.core.targets import resolve_target
from faithmap.errors import InvalidParameterError, ModelError, ShapeError, TargetError
from faithmap.testing.standins import GridDetector
from faithmap.zoo import load_builtin

TOP_LEFT = (0.0, 0.0, 8.0, 8.0)
BOTTOM_RIGHT = (8.0, 8.0, 16.0, 16.0)


def quadrant_scores(x: Tensor) -> tuple[Tensor, Tensor]:
    """``sigmoid(4 m - 2)`` of the mean ``m`` of the top-left and bottom-right quadrants."""
    top_left = torch.sigmoid(4 * x[:, :, :8, :8].mean((1, 2, 3)) - 2)
    bottom_right = torch.sigmoid(4 * x[:, :, 8:, 8:].mean((1, 2, 3)) - 2)
    return top_left, bottom_right


class QuadrantDetector(nn.Module):
    """YOLO-style ``(B, 4 + 2, 2)`` on 16 x 16 images: anchor 0 is the top-left quadrant's box,
    anchor 1 the bottom-right's; each anchor's class scores ``s`` and ``(1 - s) / 2`` read only
    its own quadrant."""

    def forward(self, x: Tensor) -> Tensor:
        top_left, bottom_right = quadrant_scores(x)
        boxes = torch.tensor([[4.0, 12.0], [4.0, 12.0], [8.0, 8.0], [8.0, 8.0]]).expand(
            x.shape[0], -1, -1
        )
        first = torch.stack([top_left, bottom_right], 1)
        return torch.cat([boxes, first.unsqueeze(1), (0.5 - first / 2).unsqueeze(1)], 1)


class ListDetector(nn.Module):
    """torchvision-style: per image the top-left box (label 0) and bottom-right box (label 1)."""

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        top_left, bottom_right = quadrant_scores(x)
        boxes = torch.tensor([TOP_LEFT, BOTTOM_RIGHT])
        return [
            {"boxes": boxes, "scores": torch.stack([a, b]), "labels": torch.tensor([0, 1])}
            for a, b in zip(top_left, bottom_right, strict=True)
        ]


def yolo_raw(objectness: Tensor | None = None) -> Tensor:
    """Two images, three anchors, two classes: ``(2, 4 [+ 1] + 2, 3)``."""
    centres = torch.tensor(
        [
            [[5.0, 10.0, 20.0], [5.0, 10.0, 20.0], [10.0, 10.0, 4.0], [10.0, 10.0, 4.0]],
            [[5.0, 10.0, 5.0], [5.0, 10.0, 2.5], [10.0, 10.0, 10.0], [10.0, 10.0, 5.0]],
        ]
    )
    scores = torch.tensor([[[0.9, 0.5, 1.0], [0.1, 0.8, 0.0]], [[0.2, 0.7, 0.6], [0.2, 0.0, 0.0]]])
    parts = [centres] + ([objectness.unsqueeze(1)] if objectness is not None else []) + [scores]
    return torch.cat(parts, 1)


def test_box_iou_by_hand() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [20.0, 0, 30, 10]])
    iou = box_iou(boxes, torch.tensor([0.0, 0.0, 10.0, 10.0]))
    torch.testing.assert_close(iou, torch.tensor([1.0, 25.0 / 175.0, 0.0]))


def test_box_target_is_the_best_iou_times_class_score() -> None:
    raw = yolo_raw()
    # image 0: anchors (0,0,10,10) 0.9, (5,5,15,15) IoU 1/7 x 0.5, far away 1.0 -> 0.9
    # image 1: (0,0,10,10) 0.2, (5,5,15,15) 0.7 / 7 = 0.1, (0,0,10,5) IoU 0.5 x 0.6 = 0.3
    torch.testing.assert_close(
        BoxTarget(box=(0, 0, 10, 10), label=0)(raw), torch.tensor([0.9, 0.3])
    )
    # class 1: image 0 max(0.1, 0.8 / 7), image 1 max(0.2, 0, 0)
    expected = torch.tensor([0.8 / 7.0, 0.2])
    torch.testing.assert_close(BoxTarget(box=(0, 0, 10, 10), label=1)(raw), expected)


@pytest.mark.parametrize(
    ("threshold", "label", "expected"),
    [
        # image 0 IoUs (1, 1/7, 0), class 0 (0.9, 0.5, 1.0); image 1 IoUs (1, 1/7, 1/2),
        # class 0 (0.2, 0.7, 0.6); class 1 (0.1, 0.8, 0) and (0.2, 0, 0).
        (0.5, 0, [0.9, 0.2]),  # IoU 1/2 is not above 0.5
        (0.4, 0, [0.9, 0.6]),
        (0.1, 0, [0.9, 0.7]),
        (0.0, 0, [0.9, 0.7]),  # the far anchor of score 1.0 does not overlap: it never counts
        (0.1, 1, [0.8, 0.2]),
        (0.5, 1, [0.1, 0.2]),
    ],
)
def test_a_thresholded_box_target_is_the_best_class_score_above_the_iou(
    threshold: float, label: int, expected: list[float]
) -> None:
    target = BoxTarget(box=(0, 0, 10, 10), label=label, iou_threshold=threshold)
    torch.testing.assert_close(target(yolo_raw()), torch.tensor(expected))


def test_a_thresholded_box_target_passes_the_gradient_to_the_class_score_only() -> None:
    raw = yolo_raw().requires_grad_(True)
    target = BoxTarget(box=(0, 0, 10, 10), label=0, iou_threshold=0.4)
    (gradient,) = torch.autograd.grad(target(raw).sum(), raw)
    torch.testing.assert_close(gradient[:, 4], torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    assert not bool(gradient[:, :4].any())  # the box coordinates get nothing


def test_bad_iou_thresholds_are_refused() -> None:
    for threshold in (1.0, -0.1, True, "0.5"):
        with pytest.raises(InvalidParameterError, match="'iou_threshold' parameter of BoxTarget"):
            BoxTarget(box=(0, 0, 1, 1), label=0, iou_threshold=threshold)  # type: ignore[arg-type]
    targets = box_targets([(0, 0, 1, 1)], [0], iou_threshold=0)
    assert targets[0].iou_threshold == 0.0 and isinstance(targets[0].iou_threshold, float)


def test_objectness_multiplies_the_class_score() -> None:
    raw = yolo_raw(objectness=torch.tensor([[0.5, 1.0, 1.0], [1.0, 1.0, 0.1]]))
    target = BoxTarget(box=(0, 0, 10, 10), label=0, adapter=YoloAdapter(objectness=True))
    # image 0: max(0.5 x 0.9, 0.5 / 7); image 1: max(0.2, 0.1, 0.1 x 0.3)
    torch.testing.assert_close(target(raw), torch.tensor([0.45, 0.2]))


def test_torchvision_lists_are_padded_and_read_by_label() -> None:
    output = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]]),
            "scores": torch.tensor([0.9, 0.6]),
            "labels": torch.tensor([2, 1]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()},
    ]
    adapter = TorchvisionAdapter(num_classes=3)
    detections = adapter(output)
    assert detections.boxes.shape == (2, 2, 4) and detections.scores.shape == (2, 2, 3)
    one = BoxTarget(box=(0, 0, 10, 10), label=1, adapter=adapter)(output)
    torch.testing.assert_close(one, torch.tensor([0.6 / 7.0, 0.0]))
    two = BoxTarget(box=(0, 0, 10, 10), label=2, adapter=adapter)(output)
    torch.testing.assert_close(two, torch.tensor([0.9, 0.0]))
    with pytest.raises(TargetError, match=r"labels \[1, 2\], outside the 2 classes"):
        TorchvisionAdapter(num_classes=2)(output)


def test_the_gradient_reaches_only_the_best_match() -> None:
    raw = yolo_raw().requires_grad_(True)
    (gradient,) = torch.autograd.grad(BoxTarget(box=(0, 0, 10, 10), label=0)(raw).sum(), raw)
    class_grad = gradient[:, 4]  # d score / d class-0 score of each anchor
    torch.testing.assert_close(class_grad, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.5]]))


def test_ranked_suppresses_overlapping_boxes_of_one_class() -> None:
    boxes = torch.tensor(
        [[[0.0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10], [20, 20, 30, 30], [5, 5, 5, 9]]]
    )
    scores = torch.tensor([[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.0, 0.0], [1.0, 0.0]]])
    ranked = Detections(boxes, scores).ranked(0)
    # the second box overlaps the first by IoU 9/11 with the same class: left out; the third
    # has another class; the fourth scores nothing; the fifth has no area
    assert [(d.label, round(d.score, 3)) for d in ranked] == [(0, 0.9), (1, 0.7)]
    assert ranked[1].box == (1.0, 0.0, 11.0, 10.0)


def test_box_targets_give_one_target_per_image() -> None:
    raw = yolo_raw()
    targets = box_targets(torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5]]), [0, 0])
    resolved = resolve_target(targets, 2, None, lambda: torch.zeros(2), torch.device("cpu"))
    # image 0 against (0,0,10,10): 0.9; image 1 against (0,0,10,5): anchor 2 exactly, 0.6
    torch.testing.assert_close(resolved.select(raw, torch.tensor([0, 1])), torch.tensor([0.9, 0.6]))
    with pytest.raises(InvalidParameterError, match="one label per box"):
        box_targets([(0, 0, 1, 1)], [0, 1])


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((5, 0, 5, 10), "x0 < x1 and y0 < y1"),
        ((0, 10, 5, 2), "x0 < x1 and y0 < y1"),
        ((0, 0, 5), "four finite numbers"),
        ((0, 0, math.inf, 5), "four finite numbers"),
        ("0,0,5,5", "four finite numbers"),
    ],
)
def test_bad_boxes_are_refused(box: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        BoxTarget(box=box, label=0)  # type: ignore[arg-type]


def test_bad_labels_and_outputs_are_refused() -> None:
    for label in (-1, True, 1.5):
        with pytest.raises(InvalidParameterError, match="'label' parameter of BoxTarget"):
            BoxTarget(box=(0, 0, 1, 1), label=label)  # type: ignore[arg-type]
    with pytest.raises(
        TargetError, match=r"label 2 is not a class of the detector, which scores 2"
    ):
        BoxTarget(box=(0, 0, 10, 10), label=2)(yolo_raw())
    with pytest.raises(TargetError, match=r"\(B, 4 \+ C, A\).*Got \(2, 6\)"):
        BoxTarget(box=(0, 0, 10, 10), label=0)(torch.zeros(2, 6))
    with pytest.raises(TargetError, match=r"one dict per image.*Got Tensor"):
        BoxTarget(box=(0, 0, 10, 10), label=0, adapter=TorchvisionAdapter(2))(yolo_raw())


def test_segmentation_target_is_the_mean_over_the_mask() -> None:
    output = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    mask = torch.tensor([[True, False], [False, True]])
    # class 1 of image 0 holds 4, 5, 6, 7: mask picks 4 and 7; of image 1: 16 and 19
    torch.testing.assert_close(SegmentationTarget(1, mask)(output), torch.tensor([5.5, 17.5]))
    weights = torch.tensor([[[3.0, 1.0], [0.0, 0.0]]])  # (1, H, W) weights
    torch.testing.assert_close(SegmentationTarget(0, weights)(output), torch.tensor([0.25, 12.25]))
    probabilities = SegmentationTarget(2, mask, softmax=True)(output)
    expected = output.softmax(1)[:, 2][:, mask].mean(1)
    torch.testing.assert_close(probabilities, expected)


def test_segmentation_target_errors() -> None:
    with pytest.raises(ShapeError, match="empty"):
        SegmentationTarget(0, torch.zeros(4, 4))
    with pytest.raises(ShapeError, match=r"\(H, W\) tensor"):
        SegmentationTarget(0, torch.ones(2, 4, 4))
    with pytest.raises(ShapeError, match="finite weights"):
        SegmentationTarget(0, -torch.ones(4, 4))
    with pytest.raises(TargetError, match="resize it"):
        SegmentationTarget(0, torch.ones(4, 4))(torch.zeros(1, 2, 8, 8))
    with pytest.raises(TargetError, match=r"label must be below C"):
        SegmentationTarget(5, torch.ones(8, 8))(torch.zeros(1, 2, 8, 8))
    with pytest.raises(TargetError, match=r"\(B, C, H, W\)"):
        SegmentationTarget(0, torch.ones(8, 8))(torch.zeros(1, 2))


def quadrant_images() -> Tensor:
    """Two 16 x 16 images: uniform noise, one brighter in the top-left, one bottom-right."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5
    x[0, :, :8, :8] += 0.5
    x[1, :, 8:, 8:] += 0.5
    return x


def expected_saliency(x: Tensor, quadrant: slice, score: Tensor) -> Tensor:
    """d sigmoid(4 m - 2) / d pixel = s (1 - s) 4 / (3 * 64) inside the quadrant, 0 outside."""
    gradient = torch.zeros(1, 16, 16)
    gradient[:, quadrant, quadrant] = float(score * (1 - score)) * 4 / (3 * 64)
    return gradient


def test_saliency_of_a_box_target_is_its_closed_form() -> None:
    x = quadrant_images()
    top_left, _ = quadrant_scores(x)
    model = faithmap.Model(QuadrantDetector(), batch_size=4)
    half = BoxTarget(box=(0, 0, 8, 16), label=0)  # IoU 1/2 with anchor 0, 0 with anchor 1
    exp = faithmap.explain(model, x, method="saliency", target=half, absolute=False, reduce="sum")
    for i in range(2):
        expected = 0.5 * 3 * expected_saliency(x, slice(0, 8), top_left[i])
        torch.testing.assert_close(exp.attributions[i], expected)


def test_structured_outputs_reach_per_sample_box_targets() -> None:
    """A torchvision-style model: one dict per image, read per sample, the batch size measured
    (with a backward pass through the dicts), each sample as if explained alone."""
    x = quadrant_images()
    top_left, bottom_right = quadrant_scores(x)
    adapter = TorchvisionAdapter(num_classes=2)
    targets = box_targets([TOP_LEFT, BOTTOM_RIGHT], [0, 1], adapter=adapter)
    model = faithmap.Model(ListDetector())
    exp = faithmap.explain(
        model, x, method="saliency", target=targets, absolute=False, reduce="sum"
    )
    torch.testing.assert_close(
        exp.attributions[0], 3 * expected_saliency(x, slice(0, 8), top_left[0])
    )
    torch.testing.assert_close(
        exp.attributions[1], 3 * expected_saliency(x, slice(8, 16), bottom_right[1])
    )
    alone = faithmap.explain(
        model, x[1:], method="saliency", target=targets[1:], absolute=False, reduce="sum"
    )
    torch.testing.assert_close(alone.attributions[0], exp.attributions[1])
    occlusion = faithmap.explain(
        model, x, method="occlusion", target=targets, activation="logits", window=4, stride=4
    )
    outside = (
        occlusion.attributions[0, :, 8:, :].abs().sum()
        + occlusion.attributions[0, :, :, 8:].abs().sum()
    )
    assert float(outside) == 0.0
    assert bool((occlusion.attributions[0, :, :8, :8] > 0).all())


def test_a_structured_model_refuses_class_readouts_clearly() -> None:
    x = quadrant_images()
    model = faithmap.Model(ListDetector(), batch_size=2)
    target = BoxTarget(box=TOP_LEFT, label=0, adapter=TorchvisionAdapter(2))
    with pytest.raises(TargetError, match=r"returns one dict per image.*predicted class"):
        faithmap.explain(model, x, method="saliency")
    with pytest.raises(
        TargetError, match=r"one dict per image.*'softmax' readout.*activation='logits'"
    ):
        faithmap.explain(model, x, method="rise", target=target, n_masks=4)
    with pytest.raises(TargetError, match=r"class target"):
        faithmap.explain(model, x, method="saliency", target=0)
    with pytest.raises(TargetError, match=r"Model.outputs"):
        model.outputs(x)


class Returns(nn.Module):
    def __init__(self, value: object) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> object:
        return self.value


def test_unusable_model_outputs_are_model_errors() -> None:
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ModelError, match=r"Got str instead"):
        faithmap.explain(Returns("boxes"), x, method="saliency", target=BoxTarget(TOP_LEFT, 0))
    one = [{"boxes": torch.zeros(1, 4), "scores": torch.zeros(1), "labels": torch.zeros(1)}]
    with pytest.raises(ModelError, match=r"one dict per image with 1 rows for a batch of 2"):
        faithmap.Model(Returns(one), batch_size=2).outputs(x)
    with pytest.raises(ModelError, match=r"a dict of tensors with 3 rows for a batch of 2"):
        faithmap.Model(Returns({"logits": torch.zeros(3, 2)}), batch_size=2).outputs(x)


def test_occlusion_and_rise_find_the_quadrant_of_the_box() -> None:
    x = quadrant_images()
    model = faithmap.Model(QuadrantDetector(), batch_size=64)
    targets = box_targets([TOP_LEFT, BOTTOM_RIGHT], [0, 0])
    occlusion = faithmap.explain(
        model, x, method="occlusion", target=targets, activation="logits", window=4, stride=4
    )
    rise = faithmap.explain(
        model, x, method="rise", target=targets, activation="logits", n_masks=256, seed=0
    )
    for exp in (occlusion, rise):
        maps = exp.attributions[:, 0]
        inside = torch.stack([maps[0, :8, :8].mean(), maps[1, 8:, 8:].mean()])
        outside = torch.stack([maps[0, 8:, 8:].mean(), maps[1, :8, :8].mean()])
        assert bool((inside > outside).all()), exp.method
    zero_outside = occlusion.attributions[0, 0].clone()
    zero_outside[:8, :8] = 0
    assert float(zero_outside.abs().max()) == 0.0


def hand_grad_cam(detector: GridDetector, x: Tensor, target: BoxTarget) -> Tensor:
    """Grad-CAM by hand: hook the layer, differentiate the box score, weight, ReLU, upsample."""
    captured: list[Tensor] = []
    layer = detector.cnn.get_submodule("features")
    handle = layer.register_forward_hook(lambda _, __, output: captured.append(output))
    try:
        score = target(detector(x)).sum()
    finally:
        handle.remove()
    maps = captured[0]
    (gradient,) = torch.autograd.grad(score, maps)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).detach()


def test_box_target_grad_cam_equals_a_hand_written_grad_cam() -> None:
    x = faithmap.data.make_shapes(2, seed=3).images
    detector = GridDetector(cells=4).eval()
    picked = pick_boxes(detector, x, detection=0, objectness=True)
    expected = torch.cat(
        [hand_grad_cam(detector, x[i : i + 1], p.target) for i, p in enumerate(picked)]
    )
    exp = faithmap.explain(
        faithmap.Model(detector, batch_size=2),
        x,
        method="grad_cam",
        layer="cnn.features",
        target=[p.target for p in picked],
    )
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(exp.attributions, expected)


def test_gradient_cam_and_perturbation_methods_run_on_the_detector_standin() -> None:
    x = faithmap.data.make_shapes(2, seed=1).images
    model = faithmap.Model(GridDetector(cells=4), batch_size=32)
    target = BoxTarget(box=(16, 16, 32, 32), label=2, adapter=YoloAdapter(objectness=True))
    runs: dict[str, dict[str, object]] = {
        "saliency": {},
        "grad_cam": {"layer": "cnn.features"},
        "occlusion": {"activation": "logits", "window": 16, "stride": 16},
        "rise": {"activation": "logits", "n_masks": 32, "seed": 0},
    }
    for method, params in runs.items():
        exp = faithmap.explain(model, x, method=method, target=target, **params)
        assert exp.attributions.shape == (2, 1, 64, 64)
        assert bool(torch.isfinite(exp.attributions).all())
        assert exp.score is target
        assert float(exp.attributions.abs().amax()) > 0, method


def test_pick_boxes_takes_a_box_or_the_ith_detection() -> None:
    x = quadrant_images()
    model = faithmap.Model(QuadrantDetector(), batch_size=2)
    top_left, bottom_right = quadrant_scores(x)
    first = pick_boxes(model, x, detection=0)
    # image 0 is bright top-left: its best prediction is anchor 0's class 0 (the other anchor's
    # best is class 1, at most 1/2); image 1 the bottom-right anchor's class 0
    assert first[0].target.box == TOP_LEFT and first[0].target.label == 0
    assert first[1].target.box == BOTTOM_RIGHT and first[1].target.label == 0
    assert first[0].score == pytest.approx(float(top_left[0]))
    assert first[1].score == pytest.approx(float(bottom_right[1]))
    given = pick_boxes(model, x, box=(0, 0, 8, 16), label=0)
    assert given[0].score == pytest.approx(0.5 * float(top_left[0]))
    with pytest.raises(InvalidParameterError, match="leaves the image of 16x16 pixels"):
        pick_boxes(model, x, box=(0, 0, 17, 8), label=0)
    with pytest.raises(InvalidParameterError, match="x0 < x1"):
        pick_boxes(model, x, box=(4, 0, 2, 8), label=0)
    with pytest.raises(TargetError, match="label 5 is not a class"):
        pick_boxes(model, x, box=(0, 0, 8, 8), label=5)
    with pytest.raises(
        InvalidParameterError, match=r"has 2 detections \(.*\), so there is no detection 2"
    ):
        pick_boxes(model, x, detection=2)
    with pytest.raises(InvalidParameterError, match=r"either by a box and a label.*detection=0"):
        pick_boxes(model, x, box=(0, 0, 8, 8), label=0, detection=0)
    with pytest.raises(TargetError, match=r"shape \(1, 6\), not a detector's"):
        pick_boxes(load_builtin("cnn"), torch.rand(1, 3, 64, 64), detection=0)
