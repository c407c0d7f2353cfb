"""Figures of explanations: heatmap overlays and insertion/deletion curves.

This is the only place where attributions are normalised, and only for display. Figures are
built as :class:`matplotlib.figure.Figure` objects drawn by the Agg canvas, so nothing here
touches pyplot's global state or the user's backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FormatStrFormatter, MaxNLocator
from numpy.typing import NDArray
from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.metrics.curves import CurveResult

__all__ = ["curves_figure", "display_limits", "overlay", "save_overlay"]

DIVERGING = "RdBu_r"
"""Colormap of signed attributions: blue negative, white zero, red positive."""
SEQUENTIAL = "inferno"
"""Colormap of non-negative attributions."""
PERCENTILE = 99.5
"""Attributions beyond this percentile of their magnitude saturate the colormap."""
ATTRIBUTION_LABEL = "attribution"
"""The colour bar's label of an attribution map."""
RANK_LABEL = "rank (chosen first = highest)"
"""The colour bar's label of a rank map (subset selection: ``R - rank`` per region)."""


def _figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _image_array(image: Tensor) -> NDArray[np.float64]:
    """``(C, H, W)`` with C in {1, 3, 4} as an ``(H, W)`` or ``(H, W, C)`` array in [0, 1]."""
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ShapeError(
            "The image to display must have shape (C, H, W) with 1, 3 or 4 channels. Got "
            f"{tuple(image.shape)} instead; pass one image of a batch, x[i]."
        )
    array = image.detach().cpu().double().numpy()
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:  # not a [0, 1] image: stretch its range for display
        array = (array - low) / (high - low if high > low else 1.0)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _map_array(attribution: Tensor, height: int, width: int) -> NDArray[np.float64]:
    values = attribution.detach().cpu().double()
    if values.dim() == 3 and values.shape[0] == 1:
        values = values[0]
    if values.shape != (height, width):
        raise ShapeError(
            f"The attribution to display must have shape (1, H, W) or (H, W) matching the image "
            f"({height}, {width}). Got {tuple(attribution.shape)} instead; reduce the channels "
            "first (for example with the method's reduce='sum')."
        )
    return values.numpy()


def display_limits(attribution: Tensor) -> tuple[float, float]:
    """The colour range of an attribution map: what :func:`overlay` shows.

    Signed maps get ``[-top, top]``, symmetric around 0; non-negative maps get ``[min, top]``
    (methods such as RISE add a large constant to every pixel, which would otherwise take the
    whole colour range). ``top`` is the :data:`PERCENTILE` percentile of the magnitudes, so a
    few extreme pixels do not wash out the rest.

    Examples
    --------
    >>> display_limits(torch.tensor([[-1.0, 2.0]]))[0] < 0
    True
    >>> display_limits(torch.tensor([[0.5, 0.75]]))[0]
    0.5
    >>> display_limits(torch.zeros(2, 2))
    (0.0, 1.0)
    """
    magnitudes = attribution.detach().abs().double().flatten()
    top = float(torch.quantile(magnitudes, PERCENTILE / 100)) if magnitudes.numel() else 0.0
    if not top > 0.0:
        top = float(magnitudes.max()) if magnitudes.numel() else 0.0
    top = top if top > 0.0 else 1.0
    if bool((attribution < 0).any()):
        return -top, top
    low = float(attribution.detach().min())
    return (low, top) if low < top else (0.0, top)


def overlay(
    image: Tensor,
    attribution: Tensor,
    *,
    mask: Tensor | None = None,
    box: Sequence[float] | None = None,
    alpha: float = 0.6,
    title: str | None = None,
    size: tuple[float, float] = (6.4, 3.2),
    ranked: bool = False,
) -> Figure:
    """An image beside its attribution map drawn over a grey copy of it, with a colour bar.

    Signed maps use a diverging colormap centred at 0 (:data:`DIVERGING`), non-negative maps a
    sequential one (:data:`SEQUENTIAL`); the range is :func:`display_limits`. The heatmap is
    drawn over the image's luminance so that the image's own colours do not mix with it.

    Parameters
    ----------
    image : Tensor
        ``(C, H, W)``, values in [0, 1] (other ranges are stretched for display).
    attribution : Tensor
        ``(1, H, W)`` or ``(H, W)`` raw attributions.
    mask : Tensor, optional
        ``(1, H, W)`` or ``(H, W)`` ground-truth mask, outlined in green on both panels.
    box : (x0, y0, x1, y1), optional
        The box of an explained detection in pixels, drawn in cyan on both panels.
    alpha : float, default=0.6
        Opacity of the heatmap.
    title : str, optional
    size : (float, float), default=(6.4, 3.2)
        Figure width and height in inches.
    ranked : bool, default=False
        ``True`` for the rank map of a subset-selection method (SMDL, LiMA: each region holds
        ``R - rank``, so the region chosen first is highest): the colour bar is labelled
        :data:`RANK_LABEL` with whole-number ticks instead of :data:`ATTRIBUTION_LABEL`.

    Returns
    -------
    Figure

    Examples
    --------
    >>> figure = overlay(torch.rand(3, 8, 8), torch.randn(1, 8, 8))
    >>> len(figure.axes)  # the image, the overlay and the colour bar
    3
    >>> figure.axes[2].get_ylabel()
    'attribution'
    """
    if not 0.0 <= alpha <= 1.0:
        raise InvalidParameterError(
            f"The 'alpha' parameter of overlay must be in [0, 1]. Got {alpha!r} instead."
        )
    picture = _image_array(image)
    height, width = picture.shape[:2]
    heat = _map_array(attribution, height, width)
    grey = picture if picture.ndim == 2 else picture[..., :3] @ np.array([0.299, 0.587, 0.114])
    outline = None if mask is None else _map_array(mask.float(), height, width)
    corners = None if box is None else [float(v) for v in box]
    if corners is not None and (len(corners) != 4 or not np.isfinite(corners).all()):
        raise InvalidParameterError(
            f"The 'box' parameter of overlay must be four numbers (x0, y0, x1, y1). Got {box!r}."
        )
    low, high = display_limits(attribution)
    figure = _figure(size)
    left, right = figure.subplots(1, 2)
    left.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0.0, vmax=1.0)
    left.set_title("input", fontsize=9)
    right.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0)
    shown = right.imshow(
        heat,
        cmap=DIVERGING if low < 0 else SEQUENTIAL,
        norm=Normalize(vmin=low, vmax=high, clip=True),
        alpha=alpha,
    )
    right.set_title(title or "attribution", fontsize=9)
    for axes in (left, right):
        axes.set_axis_off()
        if outline is not None and outline.min() < 0.5 < outline.max():
            axes.contour(outline, levels=[0.5], colors="lime", linewidths=1.0)
        if corners is not None:  # pixel (i, j) is drawn centred on (j, i): edges at -0.5
            x0, y0, x1, y1 = corners
            frame = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="cyan")
            axes.add_patch(frame)
    bar = figure.colorbar(shown, ax=right, fraction=0.046, pad=0.04, format="%.2g")
    bar.set_label(RANK_LABEL if ranked else ATTRIBUTION_LABEL, fontsize=8)
    if ranked:
        bar.locator = MaxNLocator(integer=True)
        bar.formatter = FormatStrFormatter("%d")
        bar.update_ticks()
    return figure


def save_overlay(
    path: str | Path,
    image: Tensor,
    attribution: Tensor,
    *,
    mask: Tensor | None = None,
    box: Sequence[float] | None = None,
    title: str | None = None,
    size: tuple[float, float] = (6.4, 3.2),
    dpi: int = 100,
    ranked: bool = False,
) -> Path:
    """Write :func:`overlay` as a PNG of ``size * dpi`` pixels; returns the path.

    Parameters are those of :func:`overlay` (``ranked`` too), plus ``dpi``, the pixels per
    inch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = overlay(image, attribution, mask=mask, box=box, title=title, size=size, ranked=ranked)
    figure.savefig(path, format="png", dpi=dpi)
    return path


def curves_figure(
    results: Sequence[CurveResult] | Mapping[str, CurveResult],
    *,
    size: tuple[float, float] | None = None,
) -> Figure:
    """Insertion and deletion curves against the fraction of pixels moved.

    One panel per metric (in order of first appearance); in each, one line per result: the
    mean curve over its samples with a band of one standard deviation, labelled with the mean
    area under the curve.

    Parameters
    ----------
    results : sequence of CurveResult, or mapping from a label to a CurveResult
        With a mapping, the keys label the lines (for example method names).
    size : (float, float), optional
        Figure size in inches; by default 4 inches wide per panel.

    Returns
    -------
    Figure

    Examples
    --------
    >>> from faithmap.metrics import deletion, insertion
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(768, 2))
    >>> x, saliency = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    >>> figure = curves_figure(
    ...     {"random": insertion(net, x, saliency), "random ": deletion(net, x, saliency)}
    ... )
    >>> [axes.get_title() for axes in figure.axes]
    ['insertion', 'deletion']
    """
    labelled = list(results.items()) if isinstance(results, Mapping) else [("", r) for r in results]
    if not labelled:
        raise InvalidParameterError("curves_figure needs at least one CurveResult. Got none.")
    metrics = list(dict.fromkeys(result.metric for _, result in labelled))
    figure = _figure(size or (4.0 * len(metrics), 3.2))
    panels = figure.subplots(1, len(metrics), squeeze=False)[0]
    for axes, metric in zip(panels, metrics, strict=True):
        for label, result in labelled:
            if result.metric != metric:
                continue
            fractions = result.fractions.detach().cpu().double().numpy()
            curve = result.curve.detach().cpu().double()
            mean = curve.mean(0).numpy()
            line = axes.plot(fractions, mean, label=f"{label} AUC {result.mean:.3f}".strip())[0]
            if curve.shape[0] > 1:
                spread = curve.std(0).numpy()
                axes.fill_between(
                    fractions, mean - spread, mean + spread, color=line.get_color(), alpha=0.15
                )
        axes.set_title(metric)
        axes.set_xlabel("fraction of pixels " + ("removed" if metric == "deletion" else "inserted"))
        axes.set_ylabel("target score")
        axes.set_xlim(0.0, 1.0)
        axes.legend(fontsize=8)
    return figure
