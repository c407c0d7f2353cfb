"""The report's insertion and deletion curves as inline SVG, with a legend of checkboxes.

One small panel per model × curve metric; each method is one polyline of its mean curve over
the samples, in its colour (:func:`~faithmap.bench.report.palette.method_colours`), with a
``<title>`` naming it. The legend lists the methods by family; each checkbox shows or hides
one method's lines in every panel and a family's checkbox all of its methods (the page's script
toggles a class; names never reach the script, only indices). Every name is escaped.

References
----------
Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation of Black-box
Models." BMVC 2018 (the curves).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

from faithmap.bench.report.data import ReportData
from faithmap.bench.report.palette import FAMILIES, method_family

__all__ = ["curves_html"]

_W, _H = 300, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 8, 8, 30
"""Panel size and margins, in SVG units (CSS pixels at the natural size)."""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _x(value: float) -> float:
    return _LEFT + value * (_W - _LEFT - _RIGHT)


def _y(value: float, top: float) -> float:
    return _TOP + (1 - value / top) * (_H - _TOP - _BOTTOM)


def _axes(top: float) -> str:
    parts = []
    for k in range(5):
        value = top * k / 4
        y = _y(value, top)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">'
            f"{value:.2g}</text>"
        )
    for k in range(5):
        x = _x(k / 4)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{_H - _BOTTOM + 12}" text-anchor="middle">'
            f"{k / 4:g}</text>"
        )
    parts.append(
        f'<text class="label" x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 4}" '
        'text-anchor="middle">fraction of pixels moved</text>'
    )
    return "".join(parts)


def _panel(
    data: ReportData, model: str, metric: str, index: Mapping[str, int], colours: Mapping[str, str]
) -> str:
    lines, top = [], 1e-12
    means = {}
    for method in data.methods:
        if (model, method, metric) in data.curves:
            fractions, curve = data.curves[(model, method, metric)]
            mean = curve.detach().double().cpu().nanmean(0)
            means[method] = (fractions.detach().double().cpu().tolist(), mean.tolist())
            top = max(top, float(mean.nan_to_num(0.0).max()))
    top = 1.0 if top <= 1.0 else top
    for method, (xs, ys) in means.items():
        points = " ".join(
            f"{_x(x):.1f},{_y(y, top):.1f}"
            for x, y in zip(xs, ys, strict=True)
            if not math.isnan(y)
        )
        lines.append(
            f'<polyline class="curve m{index[method]}" points="{points}" '
            f'stroke="{colours[method]}"><title>{_e(method)}</title></polyline>'
        )
    title = f"{_e(model)} · {_e(metric)}"
    return (
        f'<figure class="panel"><figcaption>{title}</figcaption>'
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{title}">{_axes(top)}{"".join(lines)}</svg></figure>'
    )


def _legend(methods: Sequence[str], index: Mapping[str, int], colours: Mapping[str, str]) -> str:
    groups = []
    for family in FAMILIES:
        members = [m for m in methods if method_family(m) == family]
        if not members:
            continue
        boxes = "".join(
            f'<label><input type="checkbox" checked data-method="{index[m]}">'
            f'<span class="swatch" style="background:{colours[m]}"></span>{_e(m)}</label>'
            for m in members
        )
        groups.append(
            f'<fieldset><legend><label><input type="checkbox" checked data-family>'
            f"{_e(family)}</label></legend>{boxes}</fieldset>"
        )
    return (
        '<div class="curve-legend"><div class="legend-actions">'
        '<button type="button" data-show="all">show all</button>'
        '<button type="button" data-show="none">hide all</button></div>'
        f"{''.join(groups)}</div>"
    )


def curves_html(data: ReportData, colours: Mapping[str, str]) -> str | None:
    """The curves section's content: the legend and one SVG panel per model × curve metric.

    ``None`` when ``data`` has no curves.
    """
    if not data.curves:
        return None
    metrics = [m for m in data.metrics if any(k[2] == m for k in data.curves)]
    metrics += [m for m in dict.fromkeys(k[2] for k in data.curves) if m not in metrics]
    methods = [m for m in data.methods if any(k[1] == m for k in data.curves)]
    index = {m: k for k, m in enumerate(methods)}
    panels = "".join(
        _panel(data, model, metric, index, colours)
        for model in data.models
        for metric in metrics
        if any(k[0] == model and k[2] == metric for k in data.curves)
    )
    legend = _legend(methods, index, colours)
    return f'<div class="curves">{legend}<div class="panels">{panels}</div></div>'
