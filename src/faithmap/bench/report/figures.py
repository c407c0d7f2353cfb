"""The figures of a benchmark report: curves (for export), cost and quality against cost, as PNG.

Figures are drawn by the Agg canvas on :class:`matplotlib.figure.Figure` objects, never through
pyplot, so writing a report leaves the user's backend and pyplot's state alone. Every method
keeps one colour in every figure. Names are shown literally: matplotlib's mathtext markers
(``$``) are escaped.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from faithmap.bench.report.data import ReportData
from faithmap.bench.report.palette import method_colours
from faithmap.bench.report.stats import CostEntry, Score
from faithmap.viz import DIVERGING, SEQUENTIAL

__all__ = [
    "colour_keys",
    "cost_figure",
    "curves_figure",
    "png_bytes",
    "tradeoff_figure",
]

_INK, _MUTED, _GRID = "#1f2933", "#52606d", "#e4e7eb"
_MASK = "#00e676"


def _text(name: str) -> str:
    """``name`` as matplotlib draws it literally (no mathtext)."""
    return name.replace("$", r"\$")


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as a PNG file's bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def colour_keys() -> dict[str, list[str]]:
    """Five hex colours along each heatmap colormap: ``"signed"`` and ``"non-negative"``."""
    from matplotlib import colormaps

    return {
        key: [to_hex(colormaps[name](k / 4)) for k in range(5)]
        for key, name in (("signed", DIVERGING), ("non-negative", SEQUENTIAL))
    }


def _style(axes: object) -> None:
    axes.spines[["top", "right"]].set_visible(False)  # type: ignore[attr-defined]
    axes.spines[["left", "bottom"]].set_color(_MUTED)  # type: ignore[attr-defined]
    axes.tick_params(colors=_MUTED, labelsize=8)  # type: ignore[attr-defined]
    axes.grid(color=_GRID, linewidth=0.8)  # type: ignore[attr-defined]
    axes.set_axisbelow(True)  # type: ignore[attr-defined]


def curves_figure(data: ReportData) -> Figure | None:
    """Mean insertion/deletion curve of every method: one panel per model × curve metric.

    Models side by side, about four panels a row, each model's metrics next to each other.
    ``None`` when ``data`` has no curves.

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018.
    """
    if not data.curves:
        return None
    models = [m for m in data.models if any(k[0] == m for k in data.curves)]
    metrics = [m for m in data.metrics if any(k[2] == m for k in data.curves)]
    metrics += [m for m in dict.fromkeys(k[2] for k in data.curves) if m not in metrics]
    colours = method_colours(data.methods)
    per_row = max(1, 4 // len(metrics))  # models side by side, about four panels a row
    rows, columns = math.ceil(len(models) / per_row), per_row * len(metrics)
    figure = _figure(2.9 * columns, 2.6 * rows + 0.4)
    panels = figure.subplots(rows, columns, squeeze=False)
    for k, model in enumerate(models):
        for j, metric in enumerate(metrics):
            row, column = divmod(k * len(metrics) + j, columns)
            axes = panels[row][column]
            _style(axes)
            for method in data.methods:
                if (model, method, metric) not in data.curves:
                    continue
                fractions, curve = data.curves[(model, method, metric)]
                mean = curve.detach().double().cpu().nanmean(0).numpy()
                x = fractions.detach().double().cpu().numpy()
                axes.plot(x, mean, color=colours[method], linewidth=1.6)
            axes.set_title(f"{_text(model)} · {_text(metric)}", fontsize=10, color=_INK)
            axes.set_xlim(0.0, 1.0)
            axes.set_xlabel("fraction of pixels moved", fontsize=8, color=_MUTED)
            if column == 0:
                axes.set_ylabel("target score", fontsize=8, color=_MUTED)
    for empty in range(len(models) * len(metrics), rows * columns):
        panels[empty // columns][empty % columns].set_visible(False)
    handles = [
        Line2D([], [], color=colours[m], linewidth=2, label=_text(m))
        for m in data.methods
        if any(k[1] == m for k in data.curves)
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 6),
        frameon=False,
        fontsize=8,
    )
    return figure


def cost_figure(costs: Sequence[CostEntry], methods: Sequence[str]) -> Figure | None:
    """Model passes per image of every method, one group of bars per model, log scale.

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018.
    """
    if not costs:
        return None
    models = list(dict.fromkeys(c.model for c in costs))
    colours = method_colours(methods)
    shown = [m for m in methods if any(c.method == m for c in costs)]
    width = 0.8 / len(models)
    figure = _figure(min(11.0, max(5.0, 0.55 * len(shown) * len(models) + 2.0)), 3.0)
    axes = figure.subplots()
    _style(axes)
    axes.grid(axis="x", visible=False)
    hatches = ("", "//", "..", "xx", "\\\\", "++")
    found = {(c.model, c.method): c for c in costs}
    for g, model in enumerate(models):
        for k, method in enumerate(shown):
            entry = found.get((model, method))
            if entry is None or not entry.expl_passes > 0 or math.isnan(entry.expl_passes):
                continue
            axes.bar(
                k + (g - (len(models) - 1) / 2) * width,
                entry.expl_passes,
                width=width * 0.92,
                color=colours[method],
                hatch=hatches[g % len(hatches)],
                edgecolor="white",
                linewidth=0.5,
            )
    axes.set_yscale("log")
    axes.set_xticks(np.arange(len(shown)))
    axes.set_xticklabels([_text(m) for m in shown], rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("model passes per image", fontsize=8, color=_MUTED)
    if len(models) > 1:
        legend = [
            Patch(facecolor="#9aa5b1", hatch=hatches[g % len(hatches)], label=_text(m))
            for g, m in enumerate(models)
        ]
        axes.legend(handles=legend, fontsize=8, frameon=False, title="model", title_fontsize=8)
    return figure


def tradeoff_figure(
    scores: Sequence[Score], costs: Sequence[CostEntry], methods: Sequence[str]
) -> Figure | None:
    """Quality against cost, one panel per model × metric.

    Each method is a point: its mean metric, with its 95% interval, against its explanation's
    model passes per image (log scale). ``None`` when no method has both.

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018.
    """
    passes = {(c.model, c.method): c.expl_passes for c in costs}
    shown = [
        s
        for s in scores
        if not math.isnan(s.mean) and passes.get((s.model, s.method), math.nan) > 0
    ]
    if not shown:
        return None
    panels = list(dict.fromkeys((s.model, s.metric) for s in shown))
    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    colours = method_colours(methods)
    figure = _figure(2.9 * columns, 2.6 * rows + 0.4)
    grid = figure.subplots(rows, columns, squeeze=False)
    for k, (model, metric) in enumerate(panels):
        axes = grid[k // columns][k % columns]
        _style(axes)
        for s in shown:
            if (s.model, s.metric) != (model, metric):
                continue
            x = passes[(s.model, s.method)]
            spread = [[s.mean - s.low], [s.high - s.mean]] if not math.isnan(s.low) else None
            axes.errorbar(
                x,
                s.mean,
                yerr=spread,
                fmt="o",
                color=colours[s.method],
                markersize=7,
                capsize=3,
                elinewidth=1.0,
                ecolor=colours[s.method] + "99",  # the interval, lighter than the mean
            )
        arrow = (
            "\u2191" if next(s for s in shown if s.metric == metric).higher_is_better else "\u2193"
        )
        axes.set_title(f"{_text(model)} · {_text(metric)} {arrow}", fontsize=10, color=_INK)
        axes.set_xscale("log")
        axes.xaxis.set_minor_locator(
            NullLocator()
        )  # labelled decades read as well, drawn 40% faster
        axes.set_xlabel("explanation passes per image", fontsize=8, color=_MUTED)
    for empty in range(len(panels), rows * columns):
        grid[empty // columns][empty % columns].set_visible(False)
    handles = [
        Line2D([], [], color=colours[m], marker="o", linestyle="", label=_text(m))
        for m in methods
        if any(s.method == m for s in shown)
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 6),
        frameon=False,
        fontsize=8,
    )
    return figure
