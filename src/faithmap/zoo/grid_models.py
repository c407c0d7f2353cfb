"""The GridPG, DiFull and DiPart settings of a trained built-in CNN, without retraining.

A :class:`GridModel` runs a trained :class:`~faithmap.zoo.SmallCNN` or
:class:`~faithmap.zoo.SmallResNet` on a ``scale x scale`` grid (:func:`faithmap.data.make_grid`)
in one of three settings:

- ``"gridpg"``: the model itself on the whole grid (both end in global average pooling, so a
  larger input is fine); output ``(N, K)``, the target of "class ``c`` at cell ``i``" is ``c``.
- ``"difull"``: every stage runs on each cell separately (:class:`CellWise`), so a cell's
  output is exactly the model's output on that cell's image, and no other cell can reach it.
- ``"dipart"``: one shared pass over the grid; each cell's head pools only its cell's region of
  the last feature map, so receptive fields still leak across cell borders.

DiFull and DiPart output ``(N, scale * scale * K)``: the logits of cell ``i`` are columns
``i * K`` to ``i * K + K - 1``; :meth:`GridModel.target` gives the column of "class ``c`` at
cell ``i``". The stages keep the base model's names (``block1``, ``block2``, ``features`` for
the CNN), so ``layer="features"`` names the same layer in all three settings and CAM methods
run unchanged; :meth:`GridModel.split` cuts the model at a stage for attributions at a layer
(ML-Att, :func:`layer_attributions`).

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.api import explain
from faithmap.core.explanation import Explanation
from faithmap.core.model import Model
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.zoo.architectures import SmallCNN, SmallResNet, normalise

__all__ = ["GRID_SETTINGS", "CellWise", "GridModel", "corner_cells", "layer_attributions"]

Setting = Literal["gridpg", "difull", "dipart"]
GRID_SETTINGS: Final[tuple[str, ...]] = ("gridpg", "difull", "dipart")
"""The settings of :class:`GridModel`."""

_STAGES: Final[dict[type[nn.Module], tuple[str, ...]]] = {
    SmallCNN: ("block1", "block2", "features"),
    SmallResNet: ("stem", "layer1", "layer2", "features"),
}


def _cells(x: Tensor, scale: int, owner: str) -> Tensor:
    """``(N, C, scale * h, scale * w)`` → ``(N * scale * scale, C, h, w)``, cells row by row."""
    n, channels, height, width = x.shape
    if height % scale or width % scale:
        raise ShapeError(
            f"{owner} splits its input into {scale} x {scale} cells, so its height and width "
            f"must be multiples of {scale}. Got {height} x {width}; use make_grid's images."
        )
    h, w = height // scale, width // scale
    split = x.reshape(n, channels, scale, h, scale, w).permute(0, 2, 4, 1, 3, 5)
    return split.reshape(n * scale * scale, channels, h, w)


def _tile(cells: Tensor, scale: int) -> Tensor:
    """The inverse of :func:`_cells`."""
    rows, channels, h, w = cells.shape
    grid = cells.reshape(rows // (scale * scale), scale, scale, channels, h, w)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(-1, channels, scale * h, scale * w)


class CellWise(nn.Module):
    """Run ``stage`` on each of the ``scale x scale`` cells of its input, in one batch, and
    tile the results back: no output cell depends on another input cell (DiFull)."""

    def __init__(self, stage: nn.Module, scale: int) -> None:
        super().__init__()
        self.stage, self.scale = stage, scale

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, scale * h, scale * w)`` → the stage's output per cell, tiled."""
        return _tile(self.stage(_cells(x, self.scale, "CellWise")), self.scale)


class GridModel(nn.Module):
    """A trained built-in CNN in the GridPG, DiFull or DiPart setting (module docstring).

    Parameters
    ----------
    base : SmallCNN or SmallResNet
        The trained model; its modules are shared, not copied, and nothing is retrained.
    setting : {"gridpg", "difull", "dipart"}
    scale : int, default=2
        Cells per side of the grids it reads.

    Examples
    --------
    >>> from faithmap.zoo import SmallCNN
    >>> model = GridModel(SmallCNN().eval(), "difull")
    >>> model(torch.rand(1, 3, 128, 128)).shape, model.target(3, 5)
    (torch.Size([1, 24]), 23)
    """

    def __init__(self, base: nn.Module, setting: Setting, *, scale: int = 2) -> None:
        super().__init__()
        if type(base) not in _STAGES:
            raise InvalidParameterError(
                f"GridModel builds on faithmap's SmallCNN or SmallResNet "
                f"(load_builtin('cnn' or 'resnet')). Got {type(base).__name__} instead."
            )
        if setting not in GRID_SETTINGS:
            raise InvalidParameterError(
                f"The 'setting' parameter of GridModel must be one of {GRID_SETTINGS}. Got "
                f"{setting!r} instead."
            )
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise InvalidParameterError(
                f"The 'scale' parameter of GridModel must be an int >= 1. Got {scale!r} instead."
            )
        self.setting, self.scale = setting, scale
        self.stage_names = _STAGES[type(base)]
        for name in self.stage_names:
            stage = getattr(base, name)
            self.add_module(name, CellWise(stage, scale) if setting == "difull" else stage)
        head = base.head
        if not isinstance(head, nn.Linear):
            raise InvalidParameterError(
                f"GridModel needs the model's classifier 'head' to be an nn.Linear after global "
                f"average pooling. Got {type(head).__name__} instead."
            )
        self.head = head
        self.num_classes = head.out_features
        self.cam_layer = "features"
        self.training = base.training

    @property
    def cells(self) -> int:
        """The number of cells, ``scale * scale``."""
        return self.scale * self.scale

    def target(self, cell: Any, label: Any) -> Any:
        """The output column of "class ``label`` at cell ``cell``" (ints or int tensors)."""
        return label if self.setting == "gridpg" else cell * self.num_classes + label

    def pool(self, maps: Tensor) -> Tensor:
        """The logits from the last feature map: global pooling (GridPG) or per cell."""
        if self.setting == "gridpg":
            logits: Tensor = self.head(maps.mean(dim=(2, 3)))
            return logits
        pooled = _cells(maps, self.scale, "GridModel").mean(dim=(2, 3))
        logits = self.head(pooled)
        return logits.reshape(maps.shape[0], self.cells * self.num_classes)

    def run(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """The stages ``start`` to ``stop - 1`` on ``x`` (stage 0 reads the raw images)."""
        if start == 0:
            x = normalise(x)
        for name in self.stage_names[start:stop]:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Grids ``(N, 3, sH, sW)`` in ``[0, 1]`` → logits ``(N, K)`` or ``(N, cells * K)``."""
        return self.pool(self.run(x))

    def split(self, layer: str) -> tuple[nn.Module, nn.Module]:
        """``(up_to, rest)``: the model up to and including stage ``layer``, and the rest (the
        later stages and the heads), so that ``rest(up_to(x)) == model(x)``."""
        if layer not in self.stage_names:
            raise InvalidParameterError(
                f"The 'layer' parameter must name a stage of the grid model, one of "
                f"{self.stage_names}. Got {layer!r} instead."
            )
        cut = self.stage_names.index(layer) + 1
        return _Part(self, 0, cut), _Part(self, cut, None)


class _Part(nn.Module):
    """Stages ``start`` to ``stop`` of a :class:`GridModel` (with the heads when ``stop`` is
    ``None``)."""

    def __init__(self, whole: GridModel, start: int, stop: int | None) -> None:
        super().__init__()
        self.whole, self.start, self.stop = whole, start, stop

    def forward(self, x: Tensor) -> Tensor:
        """The part's output."""
        out = self.whole.run(x, self.start, self.stop)
        return self.whole.pool(out) if self.stop is None else out


def corner_cells(scale: int) -> list[int]:
    """The corner cells of a ``scale x scale`` grid, where DiFull and DiPart are evaluated."""
    return sorted({0, scale - 1, scale * (scale - 1), scale * scale - 1})


def layer_attributions(
    model: GridModel,
    inputs: Tensor,
    *,
    method: str,
    layer: str,
    target: Any,
    batch_size: int | None = None,
    **params: Any,
) -> Tensor:
    """Attributions of ``method`` at the output of stage ``layer``, upsampled to the input (ML-Att).

    The model is cut after ``layer`` (:meth:`GridModel.split`); ``method`` explains the rest of
    the model at that stage's activations, exactly as it explains a model at its input, and the
    map, summed over the layer's channels, is upsampled bilinearly to the input's size. This is
    how the paper compares, for example, Integrated Gradients with Grad-CAM at the same layer.
    Perturbation methods are meant for the input; explain at a layer with gradient methods.

    ``batch_size`` is the rows per call of the cut model (``None``: measured); ``params`` go
    to the method.

    Returns
    -------
    Tensor
        ``(N, 1, H, W)`` attributions on ``inputs.device``.

    References
    ----------
    Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022
    (ML-Att).
    """
    up_to, rest = model.split(layer)
    with torch.no_grad():
        activations = up_to(inputs)
    part = Model(rest, batch_size=batch_size)
    explanation: Explanation = explain(part, activations, method=method, target=target, **params)
    maps = explanation.attributions.sum(dim=1, keepdim=True)
    return F.interpolate(maps, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
