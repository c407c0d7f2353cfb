"""Stand-ins for models nobody here made: the shapes real users bring, built from faithmap's own
trained CNN so their answers mean something.

* :class:`ProbabilityClassifier`: an OCR-style classifier that takes a non-square ``48 x 192``
  BGR input normalised as ``(x - 0.5) / 0.5`` and returns *probabilities* (softmax inside), as
  exported classifiers often do. :data:`PROBABILITY_CLASSIFIER_PREPROCESSING` declares it.
* :class:`GridDetector`: a YOLO-style detector returning ``(B, 4 + 1 + K, A)``: for each of
  ``A`` anchors (the cells of a grid) a box ``(cx, cy, w, h)``, an objectness and ``K`` class
  probabilities, so no class target can be read from it without a callable.
* :func:`export_onnx`: either one as an ONNX file with a dynamic batch axis.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.core.preprocessing import Preprocessing
from faithmap.zoo import load_builtin

PROBABILITY_CLASSIFIER_PREPROCESSING = Preprocessing(
    size=(48, 192), channels="bgr", mean=0.5, std=0.5
)
"""What :class:`ProbabilityClassifier` expects, declared for :class:`faithmap.Model`."""


class ProbabilityClassifier(nn.Module):
    """Normalised BGR ``(B, 3, 48, 192)`` in, class probabilities ``(B, 6)`` out.

    It undoes the normalisation and the channel order, letterboxes the wide input back to the
    built-in CNN's square 64 x 64 view (the middle 48 x 48 of the strip, where
    :func:`strip_images` puts the picture) and applies a softmax to its logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cnn = load_builtin("cnn")

    def forward(self, x: Tensor) -> Tensor:
        rgb = (x * 0.5 + 0.5).flip(1)
        middle = rgb[..., 72:120]
        square = F.interpolate(middle, size=(64, 64), mode="bilinear", align_corners=False)
        logits: Tensor = self.cnn(square)
        return logits.softmax(dim=1)


def strip_images(images: Tensor) -> Tensor:
    """Built-in ``(N, 3, 64, 64)`` images placed in the middle of grey ``48 x 192`` strips."""
    square = F.interpolate(images, size=(48, 48), mode="bilinear", align_corners=False)
    strip = torch.full((images.shape[0], 3, 48, 192), 0.5, dtype=images.dtype)
    strip[..., 72:120] = square
    return strip


class GridDetector(nn.Module):
    """A detector-shaped model: ``(B, 3, H, W)`` in, ``(B, 4 + 1 + K, A)`` out.

    Anchors are the cells of a ``cells x cells`` grid; each holds its cell's box, an
    objectness (how far the cell is from the image's mean colour, through a sigmoid) and the
    built-in CNN's class probabilities of the cell's neighbourhood.
    """

    def __init__(self, cells: int = 4) -> None:
        super().__init__()
        self.cells = cells
        self.cnn = load_builtin("cnn")

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        g = self.cells
        background = x.mean(dim=(2, 3), keepdim=True)
        contrast = (x - background).abs().mean(1, keepdim=True)
        objectness = torch.sigmoid(8.0 * (F.adaptive_avg_pool2d(contrast, g) - 0.1)).flatten(1)
        probs = self.cnn(F.interpolate(x, size=(64, 64), mode="bilinear")).softmax(1)
        classes = probs.unsqueeze(2).expand(-1, -1, g * g)
        rows, cols = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        centres = torch.stack(
            [(cols.flatten() + 0.5) * width / g, (rows.flatten() + 0.5) * height / g]
        ).to(x)
        sizes = torch.tensor([width / g, height / g]).to(x).unsqueeze(1).expand(-1, g * g)
        boxes = torch.cat([centres, sizes]).unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([boxes, objectness.unsqueeze(1), classes], dim=1)


def export_onnx(module: nn.Module, path: str | Path, shape: tuple[int, ...]) -> Path:
    """Export ``module`` to ONNX at ``path`` for inputs ``(B, *shape)``, batch axis dynamic."""
    path = Path(path)
    example = torch.rand(2, *shape)
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript; deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["image"],
            output_names=["output"],
            dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    return path


class BurstDetector(nn.Module):
    """A 1-D signal classifier ``(B, C, T)`` -> logits ``(B, 2)`` by matched filters.

    Each class's filter is its burst (:func:`faithmap.data.signals.burst`); the logit is the
    largest filter response over time (channels averaged), so the evidence for a class is the
    window holding its burst, the ground truth of :func:`faithmap.data.signals.make_signals`.
    """

    def __init__(self) -> None:
        super().__init__()
        from faithmap.data.signals import PERIODS, burst

        filters = torch.stack([burst(period) for period in PERIODS]).unsqueeze(1)
        self.filters = nn.Conv1d(1, len(PERIODS), filters.shape[-1], bias=False)
        self.filters.weight.data.copy_(filters / filters.norm(dim=-1, keepdim=True))

    def forward(self, x: Tensor) -> Tensor:
        response: Tensor = self.filters(x.mean(1, keepdim=True))
        return response.amax(dim=-1)
