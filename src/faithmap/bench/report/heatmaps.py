"""The report's attribution maps: one panel per model, one row per method, one cell per sample.

Every cell is its own small PNG at the image's resolution (drawn with numpy, no matplotlib
axes), shown at :data:`CELL` CSS pixels or more with nearest-neighbour scaling, and enlarged in
a viewer when clicked. Each map is blended over a grey copy of its input with its own
:func:`faithmap.viz.display_limits` (diverging colours for signed maps, sequential ones for
non-negative maps); the ground-truth mask is outlined in green. Rows follow the run's method
order on every model, and a method that did not run on a model keeps its row, saying why, so
the panels line up. The header row shows each input with its true class and the class the
model explained (its prediction).

References
----------
Adebayo, J. et al. "Sanity Checks for Saliency Maps." NeurIPS 2018 (why maps are shown beside
their inputs, not alone).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.image import imsave
from torch import Tensor

from faithmap.bench.report.data import ReportData
from faithmap.viz import DIVERGING, SEQUENTIAL, display_limits

__all__ = ["CELL", "grid_png", "heatmaps_html", "overlay_cells"]

CELL = 112
"""Side of one map on the page, in CSS pixels."""
_ALPHA = 0.65
_MASK = np.array([0, 230, 118], dtype=np.uint8)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _display_images(images: Tensor) -> Tensor:
    """``(S, 3, H, W)`` in [0, 1]; an image outside that range is stretched to it."""
    images = images.detach().double().cpu()
    lowest = images.amin(dim=(1, 2, 3), keepdim=True)
    highest = images.amax(dim=(1, 2, 3), keepdim=True)
    outside = (lowest < 0) | (highest > 1)
    stretched = (images - lowest) / (highest - lowest).clamp_min(1e-12)
    return torch.where(outside, stretched, images)


def _outline(masks: Tensor) -> Tensor:
    """``(S, H, W)`` bool: the mask's pixels with a neighbour outside it (4-neighbourhood)."""
    inside = masks.detach().bool().cpu()[:, 0].float()[:, None]
    eroded = -F.max_pool2d(-F.pad(inside, (1, 1, 1, 1), value=1.0), 3, stride=1)
    return (inside > 0.5)[:, 0] & (eroded < 0.5)[:, 0]


def overlay_cells(
    images: Tensor, maps: Tensor | None, masks: Tensor | None
) -> np.ndarray[tuple[int, ...], np.dtype[np.uint8]]:
    """``(S, H, W, 3)`` uint8 pictures: the inputs (``maps=None``) or maps over grey inputs.

    Parameters
    ----------
    images : Tensor
        ``(S, 3, H, W)``, shown as they are when in [0, 1], else stretched per image.
    maps : Tensor or None
        ``(S, H, W)`` attributions, each coloured with its own display limits.
    masks : Tensor or None
        ``(S, 1, H, W)`` ground-truth masks, outlined.
    """
    shown = _display_images(images)
    if maps is None:
        pictures = shown.permute(0, 2, 3, 1).numpy()
    else:
        grey = (shown.permute(0, 2, 3, 1) @ torch.tensor([0.299, 0.587, 0.114]).double()).numpy()
        pictures = np.empty((*grey.shape, 3))
        for i, heat in enumerate(maps.detach().double().cpu()):
            low, high = display_limits(heat)
            cmap = colormaps[DIVERGING if low < 0 else SEQUENTIAL]
            scaled = ((heat - low) / (high - low)).clamp(0.0, 1.0).numpy()
            pictures[i] = (1 - _ALPHA) * grey[i, ..., None] + _ALPHA * cmap(scaled)[..., :3]
    cells = (pictures * 255).round().clip(0, 255).astype(np.uint8)
    if masks is not None:
        cells[_outline(masks).numpy()] = _MASK
    return cells


def _png(picture: np.ndarray[tuple[int, ...], np.dtype[np.uint8]]) -> bytes:
    buffer = io.BytesIO()
    imsave(buffer, picture, format="png")
    return buffer.getvalue()


def _class(index: int | None, names: Sequence[str]) -> str:
    if index is None or index < 0:
        return "?"
    return names[index] if index < len(names) else str(index)


def _rows(data: ReportData, model: str, count: int) -> list[tuple[str, Tensor | None, str]]:
    """(method, maps or None, why not) per method, in the run's order."""
    rows = []
    for method in data.methods:
        maps = data.attributions.get((model, method))
        why = data.skipped.get((model, method), "no maps stored for this method and model")
        rows.append((method, None if maps is None else maps[:count], why))
    return rows


def grid_png(data: ReportData, model: str, max_samples: int) -> bytes | None:
    """One PNG of a model's panel: the inputs, then one row per method with maps (no labels)."""
    if data.images is None or not any(k[0] == model for k in data.attributions):
        return None
    count = min(max_samples, data.images.shape[0])
    masks = None if data.masks is None else data.masks[:count]
    rows = [overlay_cells(data.images[:count], None, masks)]
    rows += [
        overlay_cells(data.images[:count], maps, masks)
        for _, maps, _ in _rows(data, model, count)
        if maps is not None
    ]
    return _png(np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0))


def _img(picture: np.ndarray[tuple[int, ...], np.dtype[np.uint8]], alt: str) -> str:
    encoded = base64.b64encode(_png(picture)).decode("ascii")
    return (
        f'<img class="cell" alt="{_e(alt)}" title="{_e(alt)} (click to enlarge)" '
        f'width="{CELL}" height="{CELL}" src="data:image/png;base64,{encoded}">'
    )


def _panel(data: ReportData, images: Tensor, model: str, colours: Mapping[str, str]) -> str:
    count = len(images)
    masks = None if data.masks is None else data.masks[:count]
    inputs = overlay_cells(images, None, masks)
    predicted = list(data.predicted.get(model, ()))
    heads = []
    for i in range(count):
        true = None if data.labels is None else _class(int(data.labels[i]), data.class_names)
        guess = _class(int(predicted[i]), data.class_names) if predicted else None
        words = [f"#{i}"]
        words += [] if true is None else [f"true: {true}"]
        words += [] if guess is None else [f"predicted: {guess}"]
        differ = data.class_names and None not in (true, guess) and true != guess
        kind = "sample wrong" if differ else "sample"
        label = "".join(f"<span>{_e(w)}</span>" for w in words)
        heads.append(
            f'<div class="{kind}">{_img(inputs[i], f"{model} · " + ", ".join(words))}{label}</div>'
        )
    body = [f'<div class="row-label">input</div>{"".join(heads)}']
    for method, maps, why in _rows(data, model, count):
        label = (
            f'<div class="row-label"><span class="swatch" style="background:{colours[method]}">'
            f"</span>{_e(method)}</div>"
        )
        if maps is None:
            body.append(f'{label}<div class="not-run">{_e(why)}</div>')
            continue
        pictures = overlay_cells(images, maps, masks)
        cells = "".join(
            _img(pictures[i], f"{model} · {method} · #{i}") for i in range(len(pictures))
        )
        body.append(label + cells)
    return (
        f'<div class="heatgrid" style="grid-template-columns: 160px repeat({count}, {CELL}px)">'
        f"{''.join(body)}</div>"
    )


def heatmaps_html(data: ReportData, colours: Mapping[str, str], max_samples: int) -> str | None:
    """The maps section's content: a tab per model and its panel; ``None`` without maps."""
    models = [m for m in data.models if any(k[0] == m for k in data.attributions)]
    if not models or data.images is None:
        return None
    images = data.images[:max_samples]
    tabs = "".join(
        f'<button type="button" role="tab" data-tab="{k}" aria-selected="{str(k == 0).lower()}">'
        f"{_e(model)}</button>"
        for k, model in enumerate(models)
    )
    panels = "".join(
        f'<div class="tabpanel" data-panel="{k}"{"" if k == 0 else " hidden"}>'
        f"{_panel(data, images, model, colours)}</div>"
        for k, model in enumerate(models)
    )
    return f'<div class="tabs" role="tablist">{tabs}</div>{panels}'
