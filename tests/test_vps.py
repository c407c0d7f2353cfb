"""VPS (issue 16, D2): on a detector whose box score reads known pixels, the order, the curves
and the map in closed form; pass counts against the reference's ``R (R + 1)``; box targets,
structured outputs and the classifier case (SMDL's two terms)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import faithmap
from faithmap import Model
from faithmap.core.detection import BoxTarget, TorchvisionAdapter, box_targets
from faithmap.errors import InvalidParameterError

SIZE = 16
REFERENCE = (0.0, 0.0, 12.0, 8.0)
"""The explained object's box (x0, y0, x1, y1): anchor 0 predicts exactly this box."""
EVIDENCE_CELLS = 3
"""Anchor 0's class-0 score is the mean grey value of rows 0:4, columns 0:12: three 4x4 cells."""
EVIDENCE_PIXELS = 4 * 4 * EVIDENCE_CELLS


class EvidenceDetector(nn.Module):
    """YOLO-style outputs ``(B, 4 + 2, 2)`` whose box score depends on known pixels only.

    Anchor 0: the box :data:`REFERENCE`, class-0 score the mean grey value over rows 0:4 and
    columns 0:12 (inside the box). Anchor 1: the box (0, 8, 16, 16), which does not overlap
    the reference, class-0 score the mean grey value of its own rows 8:16. Class 1 scores 0.3.
    ``rows`` counts the images the detector has seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        grey = x.mean(1)
        out = torch.zeros(x.shape[0], 6, 2, dtype=x.dtype)
        out[:, :4, 0] = torch.tensor([6.0, 4.0, 12.0, 8.0])  # cx, cy, w, h of REFERENCE
        out[:, :4, 1] = torch.tensor([8.0, 12.0, 16.0, 8.0])
        out[:, 4, 0] = grey[:, 0:4, 0:12].mean((1, 2))
        out[:, 4, 1] = grey[:, 8:16, :].mean((1, 2))
        out[:, 5] = 0.3
        return out


def box_score(output: Tensor) -> Tensor:
    """Hand-written box target: max over anchors of IoU(anchor box, REFERENCE) x class-0 score."""
    cx, cy, w, h = output[:, 0], output[:, 1], output[:, 2], output[:, 3]
    rx0, ry0, rx1, ry1 = REFERENCE
    across = (
        torch.minimum(cx + w / 2, torch.tensor(rx1)) - torch.maximum(cx - w / 2, torch.tensor(rx0))
    ).clamp(min=0)
    down = (
        torch.minimum(cy + h / 2, torch.tensor(ry1)) - torch.maximum(cy - h / 2, torch.tensor(ry0))
    ).clamp(min=0)
    inter = across * down
    iou = inter / (w * h + (rx1 - rx0) * (ry1 - ry0) - inter)
    return (iou * output[:, 4]).amax(1)


def scenes(n: int = 2, seed: int = 0) -> Tensor:
    """Images in [0.2, 1] (no pixel is as dark as the fill)."""
    return 0.2 + 0.8 * torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def cell_sums(x: Tensor) -> Tensor:
    """``(N, 3)`` grey sums of the three evidence cells."""
    grey = x.double().mean(1)
    return torch.stack([grey[:, 0:4, 4 * k : 4 * k + 4].sum((1, 2)) for k in range(3)], 1)


def explain_vps(x: Tensor, target: Any = box_score, **params: Any) -> faithmap.Explanation:
    settings = {"regions": "patches:4", **params}
    return faithmap.explain(
        Model(EvidenceDetector(), batch_size=16), x, method="vps", target=target, **settings
    )


def test_vps_orders_the_evidence_cells_by_their_gain_and_maps_the_gain_still_to_come() -> None:
    x = scenes()
    result = explain_vps(x)
    sums = cell_sums(x)
    for i in range(x.shape[0]):
        a, b, c = sums[i].argsort(descending=True).tolist()
        s_a, s_b, s_c = (float(sums[i, k]) for k in (a, b, c))
        # Each evidence cell raises the clue by s / 48 and lowers the complement's score by as
        # much: gain 2 s / 48. Every other cell changes nothing (anchor 1 does not overlap).
        expected = torch.zeros(SIZE, SIZE, dtype=torch.float64)
        expected[0:4, 4 * a : 4 * a + 4] = 2 * (s_b + s_c) / EVIDENCE_PIXELS
        expected[0:4, 4 * b : 4 * b + 4] = 2 * s_c / EVIDENCE_PIXELS
        torch.testing.assert_close(result.attributions[i, 0].double(), expected, atol=1e-6, rtol=0)
        total = s_a + s_b + s_c
        inserted = [0.0, s_a, s_a + s_b] + [total] * 14
        torch.testing.assert_close(
            result.curves["insertion"][i], torch.tensor(inserted).double() / EVIDENCE_PIXELS
        )
        deleted = [total, total - s_a, s_c] + [0.0] * 14
        torch.testing.assert_close(
            result.curves["deletion"][i], torch.tensor(deleted).double() / EVIDENCE_PIXELS
        )
        torch.testing.assert_close(
            result.curves["area"][i], torch.arange(17, dtype=torch.float64) / 16
        )
    assert result.ranking is not None and result.ranking.shape == (2, 16)
    assert result.method == "vps" and result.target is None and result.score is box_score


def test_vps_with_box_targets_is_vps_with_the_hand_written_target() -> None:
    x = scenes()
    by_hand = explain_vps(x)
    one = explain_vps(x, BoxTarget(box=REFERENCE, label=0))
    each = explain_vps(x, box_targets([REFERENCE, REFERENCE], [0, 0]))
    for result in (one, each):
        torch.testing.assert_close(result.attributions, by_hand.attributions)
        assert result.ranking is not None and by_hand.ranking is not None
        assert torch.equal(result.ranking, by_hand.ranking)
        assert result.cost.forward == by_hand.cost.forward


class TorchvisionStyle(nn.Module):
    """The evidence detector's predictions as torchvision returns them: one dict per image."""

    def __init__(self) -> None:
        super().__init__()
        self.detector = EvidenceDetector()

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        out = self.detector(x)
        boxes = torch.stack(
            [
                out[:, 0] - out[:, 2] / 2,
                out[:, 1] - out[:, 3] / 2,
                out[:, 0] + out[:, 2] / 2,
                out[:, 1] + out[:, 3] / 2,
            ],
            2,
        )
        labels = torch.zeros(2, dtype=torch.long)
        return [
            {"boxes": b, "scores": s, "labels": labels}
            for b, s in zip(boxes, out[:, 4], strict=True)
        ]


def test_vps_reads_a_detector_that_returns_one_dict_per_image() -> None:
    x = scenes()
    target = BoxTarget(box=REFERENCE, label=0, adapter=TorchvisionAdapter(num_classes=2))
    result = faithmap.explain(
        Model(TorchvisionStyle(), batch_size=16),
        x,
        method="vps",
        regions="patches:4",
        target=target,
    )
    torch.testing.assert_close(result.attributions, explain_vps(x).attributions)


@pytest.mark.parametrize(
    ("regions", "complement_fill", "per_image"),
    [
        # The reference: R (R + 1). With one fill, the last-but-one step's two subsets (all
        # regions but one) and two complements (one region) were scored at the first step.
        ("patches:4", None, 16 * 17 - 4),
        ("patches:8", None, 4 * 5 - 4),
        # A fill of its own for the complements: no sharing, and the curves' end points (the
        # empty image on the fill, the full image on the complement's fill) cost 2 more.
        ("patches:4", "mean", 16 * 17 + 2),
    ],
)
def test_vps_passes_against_the_reference_count(
    regions: str, complement_fill: str | None, per_image: int
) -> None:
    x = scenes()
    detector = EvidenceDetector()
    result = faithmap.explain(
        Model(detector, batch_size=16),
        x,
        method="vps",
        target=box_score,
        regions=regions,
        complement_fill=complement_fill,
    )
    assert detector.rows == result.cost.forward == x.shape[0] * per_image
    count = 16 if regions == "patches:4" else 4
    if complement_fill is None:
        assert detector.rows <= x.shape[0] * count * (count + 1)


@pytest.mark.parametrize("search", ["bidirectional", "stochastic", "lazy"])
def test_vps_faster_searches_find_the_evidence_cells_first_in_fewer_passes(search: str) -> None:
    x = scenes()
    greedy = explain_vps(x)
    faster = explain_vps(x, search=search, pending=4, epsilon=0.01)
    assert faster.cost.forward < greedy.cost.forward
    assert faster.ranking is not None and greedy.ranking is not None
    if search != "stochastic":  # stochastic greedy sees 5 random candidates per step
        assert torch.equal(faster.ranking[:, :3], greedy.ranking[:, :3])
        torch.testing.assert_close(faster.attributions, greedy.attributions)


def test_vps_on_a_classifier_ranks_as_smdl_with_consistency_and_collaboration() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * SIZE * SIZE, 3)
    ).eval()
    x = scenes()
    vps = faithmap.explain(net, x, method="vps", regions="patches:8", target=1)
    smdl = faithmap.explain(
        net, x, method="smdl", regions="patches:8", target=1, confidence=0.0, search="greedy"
    )
    assert vps.ranking is not None and smdl.ranking is not None
    assert torch.equal(vps.ranking, smdl.ranking)
    for name in ("insertion", "deletion", "area"):
        torch.testing.assert_close(vps.curves[name], smdl.curves[name])
    assert vps.cost.forward == smdl.cost.forward


def test_vps_refuses_two_zero_weights() -> None:
    with pytest.raises(InvalidParameterError, match="'clue' and 'collaboration' must be > 0"):
        faithmap.get_method("vps", clue=0.0, collaboration=0.0)
