"""Object-level metrics (issue 16, D2): insertion and deletion of a box score, the energy pointing
game inside the box and VPS's highest confidence within an area budget, against hand
computations on the evidence detector of test_vps (its box score is the mean grey value of
three known cells)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import faithmap
from faithmap import Model
from faithmap.core.detection import box_targets
from faithmap.errors import InvalidParameterError, ShapeError, TargetError
from faithmap.metrics import (
    box_energy_pointing_game,
    deletion,
    highest_box_confidence,
    insertion,
    trapezoid_auc,
)
from faithmap.metrics.localization import Energy
from test_vps import (
    EVIDENCE_PIXELS,
    REFERENCE,
    SIZE,
    EvidenceDetector,
    box_score,
    cell_sums,
    scenes,
)

# --------------------------------------------------------------- energy pointing game in the box


def hand_box_energy(saliency: Tensor, box: tuple[float, float, float, float], part: str) -> float:
    """Energy inside the box over all of it, pixel by pixel: a pixel is in when its centre is."""
    values = saliency.double().tolist()
    low = min(min(row) for row in values)
    energy = {
        "minmax": lambda v: v - low,
        "positive": lambda v: max(v, 0.0),
        "absolute": abs,
    }[part]
    x0, y0, x1, y1 = box
    inside = total = 0.0
    for r, row in enumerate(values):
        for c, value in enumerate(row):
            total += energy(value)
            if x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1:
                inside += energy(value)
    return inside / total


@pytest.mark.parametrize("part", ["minmax", "positive", "absolute"])
def test_box_energy_pointing_game_against_a_hand_computation(part: Energy) -> None:
    maps = torch.randn(2, 1, 6, 8, generator=torch.Generator().manual_seed(0))
    boxes = [(1.0, 2.0, 5.0, 4.0), (1.4, 2.6, 4.5, 5.5)]  # the second: columns 1-3, rows 3-4
    result = box_energy_pointing_game(maps, boxes=boxes, part=part)
    expected = [hand_box_energy(maps[i, 0], boxes[i], part) for i in range(2)]
    torch.testing.assert_close(result.values.double(), torch.tensor(expected).double())
    assert result.metric == "box_energy_pointing_game" and result.higher_is_better
    assert result.choices["part"] == part and result.cost.passes == 0


def test_box_energy_pointing_game_reads_the_boxes_of_the_explained_box_targets() -> None:
    x = scenes(2)
    boxes = [REFERENCE, (0.0, 8.0, 16.0, 16.0)]
    explanation = faithmap.explain(
        Model(EvidenceDetector(), batch_size=64),
        x,
        method="d_rise",
        target=box_targets(boxes, [0, 0]),
        n_masks=64,
        grid=4,
    )
    read = box_energy_pointing_game(explanation)
    given = box_energy_pointing_game(explanation.attributions, boxes=torch.tensor(boxes))
    torch.testing.assert_close(read.values, given.values)
    assert read.choices["boxes"] == "explained" and given.choices["boxes"] == "given"


def test_box_energy_pointing_game_errors_say_what_to_pass() -> None:
    maps = torch.rand(2, 1, 8, 8)
    with pytest.raises(InvalidParameterError, match=r"not made for a box target.*boxes=\(N, 4\)"):
        box_energy_pointing_game(maps)
    with pytest.raises(ShapeError, match=r"one box per sample \(2\)\. Got 1 boxes"):
        box_energy_pointing_game(maps, boxes=[(0, 0, 4, 4)])
    with pytest.raises(InvalidParameterError, match="x0 < x1 and y0 < y1"):
        box_energy_pointing_game(maps, boxes=[(0, 0, 4, 4), (4, 0, 2, 4)])
    with pytest.raises(InvalidParameterError, match="The 'boxes' parameter of box_energy_"):
        box_energy_pointing_game(maps, boxes="0,0,4,4")  # type: ignore[arg-type]


# --------------------------------------------------------------- insertion and deletion of the box


def ranked_map(x: Tensor) -> Tensor:
    """A map ranking the evidence pixels first (brighter first), then the rest, all distinct."""
    grey = x.mean(1, keepdim=True)
    order = -torch.arange(SIZE * SIZE, dtype=x.dtype).view(1, 1, SIZE, SIZE) / 1e4
    saliency = order.expand_as(grey).clone()
    saliency[..., 0:4, 0:12] = 2.0 + grey[..., 0:4, 0:12]
    return saliency


def hand_insertion(x: Tensor, steps: int) -> Tensor:
    """``(N, steps + 1)``: the box score after inserting the top ``k * 256 / steps`` pixels."""
    grey = x.double().mean(1)[:, 0:4, 0:12].flatten(1).sort(1, descending=True).values
    counts = [round(k * SIZE * SIZE / steps) for k in range(steps + 1)]
    return torch.stack([grey[:, :count].sum(1) / EVIDENCE_PIXELS for count in counts], 1)


def test_insertion_and_deletion_score_the_box_target_with_raw_outputs() -> None:
    x, steps = scenes(2), 16
    model = Model(EvidenceDetector(), batch_size=64)
    saliency = ranked_map(x)
    inserted = insertion(
        model, x, saliency, target=box_score, activation="logits", fill=0.0, steps=steps
    )
    expected = hand_insertion(x, steps)
    torch.testing.assert_close(inserted.curve.double(), expected)
    torch.testing.assert_close(inserted.values.double(), trapezoid_auc(expected))
    deleted = deletion(
        model, x, saliency, target=box_score, activation="logits", fill=0.0, steps=steps
    )
    total = expected[:, -1:]
    torch.testing.assert_close(deleted.curve.double(), total - expected)
    assert inserted.target is None and inserted.choices["target"] == "given"


def test_insertion_of_a_detector_needs_the_raw_outputs_and_says_so() -> None:
    x = scenes(1)
    with pytest.raises(TargetError, match="activation='logits'"):
        insertion(EvidenceDetector(), x, ranked_map(x), target=box_score, steps=4)


def test_evaluate_scores_object_explanations_with_their_box_targets() -> None:
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    targets = box_targets([REFERENCE, REFERENCE], [0, 0])
    vps = faithmap.explain(model, x, method="vps", regions="patches:4", target=targets)
    d_rise = faithmap.explain(model, x, method="d_rise", target=targets, n_masks=64, grid=4)
    curve = {"activation": "logits", "steps": 8}
    table = faithmap.evaluate(
        model,
        x,
        {"vps": vps, "d_rise": d_rise},
        metrics=["insertion", "deletion", "box_energy_pointing_game", "highest_box_confidence"],
        params={"insertion": curve, "deletion": curve},
    )
    assert len(table) == 2 * 2 * 4
    for label, explanation in (("vps", vps), ("d_rise", d_rise)):
        rows = table[table["method"] == label].set_index(["metric", "sample"])["value"]
        direct = {
            "insertion": insertion(model, x, explanation, activation="logits", steps=8),
            "deletion": deletion(model, x, explanation, activation="logits", steps=8),
            "box_energy_pointing_game": box_energy_pointing_game(explanation),
            "highest_box_confidence": highest_box_confidence(model, x, explanation),
        }
        for metric, result in direct.items():
            got = [rows[(metric, i)] for i in range(2)]
            assert got == pytest.approx(result.values.double().tolist()), (label, metric)
    # VPS's map is 0 outside the evidence cells, which lie inside the box: all its energy.
    vps_rows = table[(table["method"] == "vps") & (table["metric"] == "box_energy_pointing_game")]
    assert vps_rows["value"].tolist() == pytest.approx([1.0, 1.0])


# --------------------------------------------------------------- highest confidence in a budget


@pytest.mark.parametrize(
    ("budget", "cells"),
    [(0.0625, 1), (0.125, 2), (0.15, 2), (1.0, 3)],  # area of one 4x4 cell: 1/16 of the image
)
def test_highest_box_confidence_reads_the_curve_vps_recorded(budget: float, cells: int) -> None:
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    vps = faithmap.explain(model, x, method="vps", regions="patches:4", target=box_score)
    result = highest_box_confidence(model, x, vps, budget=budget, iou_threshold=None)
    # VPS inserts the evidence cells first, brightest first: within the budget the score is
    # the sum of the brightest cells that fit, over the 48 evidence pixels.
    best = cell_sums(x).sort(1, descending=True).values[:, :cells].sum(1) / EVIDENCE_PIXELS
    torch.testing.assert_close(result.values.double(), best)
    torch.testing.assert_close(result.area.double(), torch.full((2,), cells / 16).double())
    assert result.cost.passes == 0 and result.choices["path"] == "recorded"


def test_highest_box_confidence_of_any_map_walks_a_pixel_insertion_path() -> None:
    x, steps = scenes(2), 16
    model = Model(EvidenceDetector(), batch_size=64)
    result = highest_box_confidence(
        model, x, ranked_map(x), target=box_score, budget=0.1, steps=steps, iou_threshold=None
    )
    # Points k / 16 <= 0.1: the empty image and the 16 pixels of k = 1.
    torch.testing.assert_close(result.values.double(), hand_insertion(x, steps)[:, 1])
    torch.testing.assert_close(result.area.double(), torch.full((2,), 1 / 16).double())
    assert result.cost.forward == 2 * (steps + 1) and result.choices["path"] == "pixels"
    assert result.choices["steps"] == steps


# Anchor 0 predicts REFERENCE (0, 0, 12, 8) exactly; these boxes overlap it by 72/96 and 36/96.
THREE_QUARTERS = (0.0, 0.0, 12.0, 6.0)
THREE_EIGHTHS = (0.0, 0.0, 12.0, 3.0)


def test_highest_box_confidence_thresholds_the_iou_as_vps_does() -> None:
    """VPS's protocol scores ``1[IoU > 0.5] x class score``: a box found at IoU 3/4 counts its
    whole class score, one at IoU 3/8 counts 0 (missed); ``iou_threshold=None`` keeps IoU x
    score. The evidence detector's score only grows as pixels come in, so with the whole
    image allowed the highest score is the full image's: the evidence cells' mean grey."""
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    full = cell_sums(x).sum(1) / EVIDENCE_PIXELS
    for box, overlap, counted in ((THREE_QUARTERS, 0.75, 1.0), (THREE_EIGHTHS, 0.375, 0.0)):
        vps = faithmap.explain(
            model, x, method="vps", regions="patches:4", target=box_targets([box] * 2, [0, 0])
        )
        protocol = highest_box_confidence(model, x, vps, steps=8)
        torch.testing.assert_close(protocol.values.double(), counted * full)
        assert protocol.choices["path"] == "pixels" and protocol.choices["iou_threshold"] == 0.5
        assert protocol.cost.forward == 2 * 9  # a search for another score is not read
        plain = highest_box_confidence(model, x, vps, iou_threshold=None)
        torch.testing.assert_close(plain.values.double(), overlap * full)
        assert plain.choices["path"] == "recorded" and plain.cost.passes == 0


def test_highest_box_confidence_reads_a_search_made_for_the_thresholded_score() -> None:
    """VPS explaining ``BoxTarget(iou_threshold=0.5)`` (its mode ``cls``) recorded the
    protocol's own score: within 2/16 of the image, the two brightest evidence cells."""
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    targets = box_targets([THREE_QUARTERS] * 2, [0, 0], iou_threshold=0.5)
    vps = faithmap.explain(model, x, method="vps", regions="patches:4", target=targets)
    result = highest_box_confidence(model, x, vps, budget=0.125)
    best = cell_sums(x).sort(1, descending=True).values[:, :2].sum(1) / EVIDENCE_PIXELS
    torch.testing.assert_close(result.values.double(), best)
    assert result.choices["path"] == "recorded" and result.cost.passes == 0


def test_highest_box_confidence_thresholds_only_box_targets() -> None:
    x = scenes(1)
    model = Model(EvidenceDetector(), batch_size=64)
    with pytest.raises(InvalidParameterError, match=r"the target is function.*iou_threshold=None"):
        highest_box_confidence(model, x, ranked_map(x), target=box_score)
    with pytest.raises(InvalidParameterError, match=r"target is missing \(a bare map\)"):
        highest_box_confidence(model, x, ranked_map(x))
    with pytest.raises(InvalidParameterError, match="'iou_threshold' parameter of highest_box"):
        highest_box_confidence(model, x, ranked_map(x), target=box_score, iou_threshold=1.0)
