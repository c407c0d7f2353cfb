"""Tests of the detection scenes, the built-in detector, its NMS, mAP, training and weights."""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import faithmap
from faithmap.data import CLASS_NAMES, make_shapes_scenes
from faithmap.errors import FileProblemError, InvalidParameterError, ShapeError
from faithmap.zoo import DETECTOR_MODELS, ZOO_MODELS, architecture, load_builtin
from faithmap.zoo.detector import ShapesDetector, box_iou, nms, postprocess
from faithmap.zoo.train_detector import (
    _targets,
    average_precision,
    main,
    mean_average_precision,
    train,
)

# The shipped weights were trained on scene seeds 0 (train) and 1 (held out).
UNSEEN_SEED = 2_024


# --- scenes -----------------------------------------------------------------------------------


def test_scenes_are_deterministic_from_the_seed() -> None:
    a, b = make_shapes_scenes(6, seed=3), make_shapes_scenes(6, seed=3)
    other = make_shapes_scenes(6, seed=4)
    assert torch.equal(a.images, b.images)
    for field in ("boxes", "labels", "masks"):
        for x, y in zip(getattr(a, field), getattr(b, field), strict=True):
            assert torch.equal(x, y)
    assert not torch.equal(a.images, other.images)


def test_scenes_shapes_counts_and_ranges() -> None:
    scenes = make_shapes_scenes(40, seed=0, size=64, min_objects=2, max_objects=3)
    assert scenes.images.shape == (40, 3, 64, 64) and len(scenes) == 40
    assert float(scenes.images.min()) >= 0.0 and float(scenes.images.max()) <= 1.0
    counts = [len(labels) for labels in scenes.labels]
    assert set(counts) == {2, 3}
    for boxes, labels, masks, k in zip(
        scenes.boxes, scenes.labels, scenes.masks, counts, strict=True
    ):
        assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
        assert labels.dtype == torch.int64 and masks.shape == (k, 64, 64)
        assert masks.dtype == torch.bool
        assert bool(((labels >= 0) & (labels < len(CLASS_NAMES))).all())
    assert scenes.class_names == CLASS_NAMES


def test_boxes_are_tight_around_disjoint_masks() -> None:
    scenes = make_shapes_scenes(12, seed=1, min_objects=5, max_objects=9)
    for boxes, masks in zip(scenes.boxes, scenes.masks, strict=True):
        # Objects never overlap, nor touch: dilating one mask by a pixel misses the others.
        grown = torch.nn.functional.max_pool2d(masks[:, None].float(), 3, 1, 1)[:, 0] > 0
        for i, mask in enumerate(masks):
            rows, cols = mask.nonzero(as_tuple=True)
            expected = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert boxes[i].tolist() == [float(v) for v in expected]
            others = torch.cat([masks[:i], masks[i + 1 :]])
            assert not bool((grown[i] & others.any(dim=0)).any())


def test_scene_objects_differ_in_colour_from_their_background() -> None:
    # Every object pixel differs from every background pixel of its image in each channel.
    scenes = make_shapes_scenes(5, seed=2)
    for image, masks in zip(scenes.images, scenes.masks, strict=True):
        background = image[:, ~masks.any(dim=0)]
        for mask in masks:
            inside = image[:, mask]
            gap = (inside[:, :, None] - background[:, None, :]).abs().amin(dim=(1, 2))
            assert bool((gap > 0.1).all())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 0}, "'n'"),
        ({"size": 40}, "'size'"),
        ({"max_objects": 10}, "'max_objects'"),
        ({"min_objects": 0}, "'min_objects'"),
        ({"min_objects": 3, "max_objects": 2}, "at most 'max_objects'"),
    ],
)
def test_scenes_refuse_bad_parameters(params: dict[str, int], message: str) -> None:
    arguments = {"n": 2, **params}
    with pytest.raises(InvalidParameterError, match=message):
        make_shapes_scenes(**arguments)


# --- the network --------------------------------------------------------------------------------


def test_output_layout_and_shape() -> None:
    torch.manual_seed(0)
    detector = ShapesDetector().eval()
    out = detector(torch.rand(2, 3, 96, 64))
    assert out.shape == (2, 4 + 6, 12 * 8)
    scores = out[:, 4:]
    assert bool(((scores >= 0) & (scores <= 1)).all())
    assert bool((out[:, 2:4] > 0).all())
    # Prediction a = i * 8 + j has its centre inside cell (i, j).
    a = torch.arange(96)
    row, col = a // 8, a % 8
    assert bool(((out[:, 0] >= 8 * col) & (out[:, 0] <= 8 * col + 8)).all())
    assert bool(((out[:, 1] >= 8 * row) & (out[:, 1] <= 8 * row + 8)).all())


def test_output_is_differentiable_in_the_input() -> None:
    torch.manual_seed(0)
    detector = ShapesDetector().eval()
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    out = detector(x)
    (grad,) = torch.autograd.grad(out[0, 4 + 2, 27] + out[0, 2, 27], x)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_cam_methods_read_the_features_block_by_default() -> None:
    torch.manual_seed(0)
    detector = ShapesDetector().eval()
    x = torch.rand(2, 3, 64, 64)

    def score(out: torch.Tensor) -> torch.Tensor:
        return out[:, 4 + 1, 27]

    default = faithmap.explain(detector, x, method="grad_cam", target=score)
    named = faithmap.explain(detector, x, method="grad_cam", target=score, layer="features")
    last_conv = faithmap.explain(detector, x, method="grad_cam", target=score, layer="head")
    assert default.attributions.shape == (2, 1, 64, 64)
    torch.testing.assert_close(default.attributions, named.attributions)
    assert not torch.allclose(default.attributions, last_conv.attributions)


def test_bad_input_shape() -> None:
    with pytest.raises(ShapeError, match=r"\(B, 3, H, W\)"):
        ShapesDetector()(torch.rand(3, 64, 64))


# --- boxes, NMS, postprocessing -------------------------------------------------------------


def test_box_iou_by_hand() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    # 50 / 150; identical; disjoint. The empty box overlaps nothing.
    expected = torch.tensor([[1 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_nms_by_hand() -> None:
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0: score .8
            [1.0, 1.0, 11.0, 11.0],  # 1: .9, IoU with 0 = 81 / 119 = 0.68
            [0.0, 0.0, 10.0, 12.0],  # 2: .7, IoU with 1 = 90 / 130 = 0.69, with 0 = 100 / 120
            [0.0, 5.0, 10.0, 15.0],  # 3: .6, IoU with 1 = 54 / 146 = 0.37, with 0 = 50 / 150
            [30.0, 30.0, 40.0, 40.0],  # 4: .5, far away
        ]
    )
    scores = torch.tensor([0.8, 0.9, 0.7, 0.6, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3, 4]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2, 3, 4]
    # Different labels never suppress each other: box 0 (label 1) survives box 1 (label 0).
    labels = torch.tensor([1, 0, 0, 0, 0])
    assert nms(boxes, scores, 0.5, labels).tolist() == [1, 0, 3, 4]


def test_postprocess_thresholds_and_suppresses() -> None:
    # Three predictions of two classes: cells 0 and 1 hold near-identical class-1 boxes.
    output = torch.zeros(1, 4 + 2, 3)
    output[0, :4] = torch.tensor(
        [[5.0, 6.0, 40.0], [5.0, 5.0, 40.0], [8.0, 8.0, 6.0], [8.0, 8.0, 6.0]]
    )
    output[0, 4:] = torch.tensor([[0.1, 0.2, 0.25], [0.9, 0.6, 0.1]])
    (found,) = postprocess(output, score_threshold=0.3, iou_threshold=0.5)
    assert set(found) == {"boxes", "scores", "labels"}
    torch.testing.assert_close(found["boxes"], torch.tensor([[1.0, 1.0, 9.0, 9.0]]))
    torch.testing.assert_close(found["scores"], torch.tensor([0.9]))
    assert found["labels"].tolist() == [1]
    (everything,) = postprocess(output, score_threshold=0.0, iou_threshold=1.0)
    assert everything["labels"].tolist() == [1, 1, 0]


def test_postprocess_refuses_bad_output() -> None:
    with pytest.raises(ShapeError, match=r"\(B, 4 \+ C, A\)"):
        postprocess(torch.zeros(2, 4, 10))
    with pytest.raises(InvalidParameterError, match="'score_threshold'"):
        postprocess(torch.zeros(1, 6, 4), score_threshold=1.5)


# --- average precision --------------------------------------------------------------------------


def test_average_precision_by_hand() -> None:
    # Ranked hits T, F, T over 2 truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1;
    # the envelope is 1, 2/3, 2/3, so AP = 1/2 * 1 + 1/2 * 2/3.
    ap = average_precision(torch.tensor([0.7, 0.9, 0.8]), torch.tensor([True, True, False]), 2)
    assert ap == pytest.approx(0.5 + 1 / 3)
    assert average_precision(torch.tensor([0.5]), torch.tensor([True]), 0) == 0.0


def test_mean_average_precision_by_hand() -> None:
    truth_boxes = [
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]),
        torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
    ]
    truth_labels = [torch.tensor([0, 1]), torch.tensor([0])]
    detections = [
        {  # class 0: a hit (.9), a duplicate of the same object (.8, a miss);
            # class 1: its box is found with IoU 25 / 175 < 0.5 (a miss)
            "boxes": torch.tensor(
                [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0], [25.0, 25.0, 35.0, 35.0]]
            ),
            "scores": torch.tensor([0.9, 0.8, 0.95]),
            "labels": torch.tensor([0, 0, 1]),
        },
        {  # class 0: a hit at IoU 0.81 (.7); a box of class 2, which has no truth (ignored)
            "boxes": torch.tensor([[1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]),
            "scores": torch.tensor([0.7, 0.99]),
            "labels": torch.tensor([0, 2]),
        },
    ]
    # Class 0 ranks T, F, T over 2 truths: AP 5/6 (as above). Class 1: AP 0.
    expected = (5 / 6 + 0.0) / 2
    assert mean_average_precision(detections, truth_boxes, truth_labels) == pytest.approx(expected)
    # At IoU 0.85 the class-0 hit at IoU 0.81 misses: class 0 ranks T, F, F, AP 1/2.
    low = mean_average_precision(detections, truth_boxes, truth_labels, iou_threshold=0.85)
    assert low == pytest.approx(0.25)


def test_mean_average_precision_of_the_truth_is_one() -> None:
    scenes = make_shapes_scenes(5, seed=0)
    truth = [
        {"boxes": b, "scores": torch.ones(len(b)), "labels": lab}
        for b, lab in zip(scenes.boxes, scenes.labels, strict=True)
    ]
    assert mean_average_precision(truth, scenes.boxes, scenes.labels) == 1.0


def test_mean_average_precision_refuses_mismatched_lengths() -> None:
    with pytest.raises(ShapeError, match="one detection dict"):
        mean_average_precision([], [torch.zeros(0, 4)], [torch.zeros(0)])


# --- training -----------------------------------------------------------------------------------


def test_training_targets_by_hand() -> None:
    # Box (16, 24)-(40, 40): centre (28, 32) px = (3.5, 4.0) cells, so cell column 3, row 4,
    # offset (0.5, 0.0), size 3 x 2 cells; class 2 of 6 on a 12 x 12 grid.
    heat, box, positive = _targets(
        [torch.tensor([[16.0, 24.0, 40.0, 40.0]])], [torch.tensor([2])], 6, 12
    )
    assert positive.nonzero().tolist() == [[0, 4, 3]]
    torch.testing.assert_close(box[0, :, 4, 3], torch.tensor([0.5, 0.0, math.log(3), math.log(2)]))
    assert float(heat[0, 2, 4, 3]) == 1.0 and float(heat[0, [0, 1, 3, 4, 5]].abs().sum()) == 0.0
    # A Gaussian of sigma = 3 / 6 cells: exp(-1 / (2 * 0.25)) one cell away.
    assert float(heat[0, 2, 4, 4]) == pytest.approx(math.exp(-2.0))


def test_train_runs_and_main_saves_loadable_weights(tmp_path: Path) -> None:
    out = tmp_path / "detector.safetensors"
    main(["--out", str(out), "--n-train", "16", "--epochs", "1", "--n-eval", "4", "--size", "48"])
    detector = ShapesDetector()
    detector.load_state_dict(load_file(str(out)))
    with safe_open(str(out), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["arch"] == "detector" and 0.0 <= float(metadata["map50"]) <= 1.0
    again = train(n_train=16, epochs=1, n_eval=4, size=48)
    for name, value in again.model.state_dict().items():
        torch.testing.assert_close(value, detector.state_dict()[name], rtol=0, atol=0)


def test_train_refuses_a_size_off_the_grid() -> None:
    with pytest.raises(InvalidParameterError, match="multiple of 8"):
        train(n_train=8, epochs=1, size=50)


# --- the shipped detector -----------------------------------------------------------------------


def test_detector_is_a_zoo_model() -> None:
    assert DETECTOR_MODELS == ("detector",) and "detector" in ZOO_MODELS
    assert isinstance(architecture("detector"), ShapesDetector)


def test_shipped_detector_finds_unseen_shapes() -> None:
    detector = load_builtin("detector")
    assert isinstance(detector, ShapesDetector) and not detector.training
    scenes = make_shapes_scenes(100, seed=UNSEEN_SEED)
    found = detector.detect(scenes.images, score_threshold=0.05)
    assert mean_average_precision(found, scenes.boxes, scenes.labels) >= 0.8


def test_shipped_detector_weights_are_small_and_labelled() -> None:
    path = files("faithmap.zoo").joinpath("weights", "detector.safetensors")
    assert len(path.read_bytes()) < 2_000_000
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["arch"] == "detector" and float(metadata["map50"]) >= 0.8


def test_missing_detector_weights_say_how_to_make_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import faithmap.zoo

    monkeypatch.setattr(faithmap.zoo, "files", lambda _: tmp_path)
    with pytest.raises(FileProblemError, match=r"python -m faithmap\.zoo\.train_detector --out"):
        load_builtin("detector")
