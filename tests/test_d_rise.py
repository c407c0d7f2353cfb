"""D-RISE (issue 16, D2): the paper's weighted sum of masks, computed by hand from the masked
images the detector saw; its mass on the pixels the box score reads; box targets; RISE's masks."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

import faithmap
from faithmap import Model
from faithmap.core.detection import BoxTarget
from faithmap.methods import DRise, Rise
from test_vps import REFERENCE, SIZE, EvidenceDetector, box_score, scenes


class RecordingDetector(EvidenceDetector):
    """The evidence detector, keeping every image it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return super().forward(x)


def test_d_rise_is_the_score_weighted_sum_of_the_masks_the_detector_saw() -> None:
    x = scenes(1)
    detector = RecordingDetector()
    n_masks, keep = 300, 0.5
    result = faithmap.explain(
        Model(detector, batch_size=64),
        x,
        method="d_rise",
        target=box_score,
        n_masks=n_masks,
        grid=4,
    )
    masked = torch.cat(detector.seen).double()
    assert masked.shape[0] == n_masks == result.cost.forward
    masks = masked[:, 0] / x[0, 0].double()  # the fill is 0 and no pixel of x is 0
    torch.testing.assert_close(masked, masks[:, None] * x.double())  # one mask for every channel
    # The similarity of each masked image to the detection (IoU 1 for anchor 0, 0 for anchor 1,
    # times its class score), by hand: the mean grey value of the masked evidence cells.
    similarity = masked.mean(1)[:, 0:4, 0:12].mean((1, 2))
    expected = (similarity[:, None, None] * masks).sum(0) / (n_masks * keep)
    torch.testing.assert_close(result.attributions[0, 0].double(), expected, rtol=1e-5, atol=1e-6)


def test_d_rise_puts_its_mass_on_the_pixels_the_box_score_reads() -> None:
    x = scenes(1)
    n_masks, keep = 4000, 0.5
    result = faithmap.explain(
        Model(EvidenceDetector(), batch_size=256),
        x,
        method="d_rise",
        target=box_score,
        n_masks=n_masks,
        grid=4,
    )
    saliency = result.attributions[0, 0].double()
    grey = x[0].double().mean(0)
    # Grid 4 on 16 pixels: masks are upsampled to 20 pixels (5 per cell) and shifted by 0-3, so
    # rows 12:16 read mask cells 2-3 and the evidence rows 0:4 cells 0-1: independent. There the
    # expected saliency is E[s] E[M] / p = E[s] = p * (mean grey of the evidence).
    far = float(saliency[12:16].mean())
    independent = keep * float(grey[0:4, 0:12].mean())
    # Each mask adds a term in [0, max s / p] to the mean: Hoeffding's bound at 1e-6.
    spread = float(grey[0:4, 0:12].mean()) / keep
    tolerance = spread * math.sqrt(math.log(2 / 1e-6) / (2 * n_masks))
    assert abs(far - independent) <= tolerance, (far, independent, tolerance)
    # On the evidence the masks that keep it are the ones that score: above that level by more
    # than the noise; the distractor's rows (8:16, another box) get no more than the far level.
    assert float(saliency[0:4, 0:12].mean()) > independent + tolerance
    assert float(saliency[8:16].mean()) < independent + tolerance
    row, col = divmod(int(saliency.argmax()), SIZE)
    assert row < 4 and col < 12, (row, col)


def test_d_rise_with_a_box_target_is_d_rise_with_the_hand_written_one() -> None:
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    settings: dict[str, Any] = {"method": "d_rise", "n_masks": 200, "grid": 4, "seed": 3}
    by_hand = faithmap.explain(model, x, target=box_score, **settings)
    boxed = faithmap.explain(model, x, target=BoxTarget(box=REFERENCE, label=0), **settings)
    torch.testing.assert_close(boxed.attributions, by_hand.attributions)


def test_d_rise_is_rise_with_the_papers_masks_on_raw_outputs() -> None:
    method = DRise()
    assert (method.n_masks, method.grid, method.keep_probability) == (5000, 16, 0.5)
    assert method.activation == "logits" and Rise().activation == "softmax"
    assert faithmap.METHODS["d_rise"] is DRise and issubclass(DRise, Rise)
    x = scenes(2)
    model = Model(EvidenceDetector(), batch_size=64)
    d_rise = faithmap.explain(model, x, method="d_rise", target=box_score, n_masks=100, grid=4)
    rise = faithmap.explain(
        model, x, method="rise", target=box_score, n_masks=100, grid=4, activation="logits"
    )
    assert torch.equal(d_rise.attributions, rise.attributions)
    assert d_rise.method == "d_rise" and d_rise.config["grid"] == 4
