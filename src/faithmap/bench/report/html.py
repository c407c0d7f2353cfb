"""The markup of the benchmark report: one self-contained HTML page.

Every name and value from the data goes through :func:`html.escape` (quotes included) before
it reaches the page, and pictures are inline ``data:`` URIs, so the page loads nothing from
anywhere: it can be mailed, archived or opened offline. Its stylesheet and script are the
package data files ``report.css`` and ``report.js``, written into the page itself. The script
only reorders table rows when a column header is clicked; it never reads or writes markup, so
no name from the data can reach it unescaped.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from html import escape
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from faithmap.bench.report.data import ReportData
from faithmap.bench.report.figures import colour_keys
from faithmap.bench.report.stats import LEVEL, CostEntry, Score

__all__ = ["render_page"]


@cache
def _asset(name: str) -> str:
    """The text of the package data file ``name`` (``report.css`` or ``report.js``)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


_TEXT = ' data-kind="text"'
_WIDE = ' class="wide"'


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _number(value: float, digits: int = 3) -> str:
    if math.isnan(value):
        return "—"
    if value != 0 and (abs(value) >= 10**4 or abs(value) < 10 ** (-digits)):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _count(value: float) -> str:
    """Passes: whole numbers with thousands separators, fractions with 3 significant digits."""
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value == round(value) else f"{value:,.3g}"


def _sort_key(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def _img(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{encoded}">'


def _figure(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return f'<p class="note">No {_e(alt)} in this run.</p>'
    text = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f"<figure>{_img(png, alt)}{text}</figure>"


def _keys() -> str:
    keys = colour_keys()
    signed = ", ".join(keys["signed"])
    positive = ", ".join(keys["non-negative"])
    return (
        '<div class="keys"><span>negative</span>'
        f'<span class="key" style="background:linear-gradient(90deg, {signed})"></span>'
        '<span>positive</span><span class="sep"></span><span>low</span>'
        f'<span class="key" style="background:linear-gradient(90deg, {positive})"></span>'
        '<span>high</span><span class="sep"></span><span class="mask"></span>'
        "<span>ground-truth mask</span></div>"
    )


def _header(data: ReportData, links: Sequence[tuple[str, str]]) -> str:
    samples = len({row.sample for row in data.rows})
    facts = [
        (samples, "samples"),
        (len(data.models), "models"),
        (len(data.methods), "methods"),
        (len(data.metrics), "metrics"),
        (len(data.rows), "measurements"),
    ]
    fact_html = "".join(
        f'<span class="fact"><b>{n}</b>{_e(what if n != 1 else what[:-1])}</span>'
        for n, what in facts
    )
    nav = "".join(f'<a href="#{anchor}">{_e(label)}</a>' for anchor, label in links)
    return (
        '<header class="hero"><div class="brand">faithmap benchmark report</div>'
        f"<h1>Run <code>{_e(data.run_id)}</code></h1>"
        f'<div class="facts">{fact_html}</div><nav>{nav}</nav></header>'
    )


def _leaderboard(data: ReportData, scores: Sequence[Score], colours: Mapping[str, str]) -> str:
    columns = [(model, metric) for model in data.models for metric in data.metrics]
    found = {(s.model, s.metric, s.method): s for s in scores}
    columns = [c for c in columns if any((c[0], c[1], m) in found for m in data.methods)]
    group = "".join(
        f'<th colspan="{sum(c[0] == model for c in columns)}">{_e(model)}</th>'
        for model in dict.fromkeys(c[0] for c in columns)
    )
    heads = []
    for k, (_, metric) in enumerate(columns):
        higher = bool(data.higher_is_better[metric])
        arrow, first = ("\u2191", "desc") if higher else ("\u2193", "asc")
        direction = "higher is better" if higher else "lower is better"
        heads.append(
            f'<th class="sortable" data-col="{k + 1}" data-first="{first}" '
            f'title="{_e(metric)}: {direction}">{_e(metric)} {arrow}</th>'
        )
    mean_col = len(columns) + 1
    head = (
        f'<thead><tr class="group"><th></th>{group}<th></th></tr><tr>'
        '<th class="sortable" data-col="0" data-first="asc" data-kind="text">method</th>'
        f"{''.join(heads)}"
        f'<th class="sortable sorted-asc" data-col="{mean_col}" data-first="asc" '
        'title="mean of the ranks over every model and metric">mean rank</th></tr></thead>'
    )
    mean_ranks = {}
    for method in data.methods:
        ranks = [
            score.rank
            for model, metric in columns
            if (score := found.get((model, metric, method))) is not None and score.rank is not None
        ]
        mean_ranks[method] = sum(ranks) / len(ranks) if ranks else math.nan
    top = min((r for r in mean_ranks.values() if not math.isnan(r)), default=math.nan)
    order = sorted(data.methods, key=lambda m: (math.isnan(mean_ranks[m]), mean_ranks[m]))
    body = []
    for method in order:
        cells = [
            f'<td class="method" data-sort="{_e(method)}"><span class="swatch" '
            f'style="background:{colours[method]}"></span>{_e(method)}</td>'
        ]
        for model, metric in columns:
            score = found.get((model, metric, method))
            if score is None or math.isnan(score.mean):
                cells.append('<td class="missing" data-sort="">—</td>')
                continue
            half = (score.high - score.low) / 2
            interval = "" if math.isnan(half) else f'<span class="ci">± {_number(half)}</span>'
            best = ' class="best"' if score.rank == 1 else ""
            title = f"n = {score.n}; {LEVEL:.0%} CI [{_number(score.low)}, {_number(score.high)}]"
            cells.append(
                f'<td{best} data-sort="{_sort_key(score.mean)}" title="{_e(title)}">'
                f'{_number(score.mean)}{interval}<span class="rank">{score.rank}</span></td>'
            )
        mean_rank = mean_ranks[method]
        kind = "meanrank best" if mean_rank == top else "meanrank"
        cells.append(
            f'<td class="{kind}" data-sort="{_sort_key(mean_rank)}">{_number(mean_rank, 2)}</td>'
        )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        '<div class="scroll"><table class="sortable leaderboard">'
        f"{head}<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cost_table(costs: Sequence[CostEntry], colours: Mapping[str, str]) -> str:
    names = [
        ("model", "text"),
        ("method", "text"),
        ("explanation passes / image", ""),
        ("explanation s / image", ""),
        ("metric passes / image", ""),
        ("metric s / image", ""),
    ]
    heads = "".join(
        f'<th class="sortable{" text" if kind else ""}" data-col="{k}" data-first="asc"'
        f"{_TEXT if kind else ''}>{_e(name)}</th>"
        for k, (name, kind) in enumerate(names)
    )
    body = []
    for c in costs:
        numbers = (c.expl_passes, c.expl_seconds, c.metric_passes, c.metric_seconds)
        cells = "".join(
            f'<td data-sort="{_sort_key(v)}">{_count(v) if k % 2 == 0 else _number(v)}</td>'
            for k, v in enumerate(numbers)
        )
        body.append(
            f'<tr><td class="text" data-sort="{_e(c.model)}">{_e(c.model)}</td>'
            f'<td class="method text" data-sort="{_e(c.method)}"><span class="swatch" '
            f'style="background:{colours[c.method]}"></span>{_e(c.method)}</td>{cells}</tr>'
        )
    return (
        '<div class="scroll tall"><table class="sortable">'
        f"<thead><tr>{heads}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _config(data: ReportData, exports: Sequence[str]) -> str:
    text = json.dumps(dict(data.config), indent=2, default=str, ensure_ascii=False)
    versions = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(version)}</td></tr>"
        for name, version in data.versions.items()
    )
    links = "".join(f'<li><a href="{_e(quote(name))}">{_e(name)}</a></li>' for name in exports)
    return (
        f'<div class="columns"><div><pre>{_e(text)}</pre></div><div>'
        f"<h3>Package versions</h3><table><tbody>{versions}</tbody></table>"
        '<h3>Exports</h3><p class="note">Written beside this page:</p>'
        f'<ul class="exports">{links}</ul></div></div>'
    )


def render_page(
    data: ReportData,
    scores: Sequence[Score],
    costs: Sequence[CostEntry],
    colours: Mapping[str, str],
    figures: Mapping[str, Any],
    exports: Sequence[str],
) -> str:
    """The report's HTML.

    Parameters
    ----------
    data : ReportData
    scores : sequence of Score
        The leaderboard, from :func:`~faithmap.bench.report.stats.leaderboard`.
    costs : sequence of CostEntry
        From :func:`~faithmap.bench.report.stats.cost_table`.
    colours : mapping from method to a hex colour
    figures : mapping
        ``"curves"``, ``"cost"`` and ``"tradeoff"`` to PNG bytes or None, and ``"heatmaps"`` to
        a mapping from model name to PNG bytes or None.
    exports : sequence of str
        File names of the exports written beside the page, linked from it.

    Returns
    -------
    str

    References
    ----------
    .. [1] Student. "The probable error of a mean." Biometrika 6(1), 1908 (the intervals).
    """
    links = [
        ("leaderboard", "Leaderboard"),
        ("curves", "Curves"),
        ("heatmaps", "Heatmaps"),
        ("cost", "Cost"),
        ("config", "Config"),
    ]
    wide = len(data.methods) > 6
    grids = "".join(
        f"<div{_WIDE if wide else ''}><h3>{_e(model)}</h3>"
        + _figure(png, f"heatmaps of {model}", "")
        + "</div>"
        for model, png in figures["heatmaps"].items()
    )
    heatmaps = (
        f'{_keys()}<div class="grids">{grids}</div>'
        if grids
        else '<p class="note">No attribution maps in this run.</p>'
    )
    sections = [
        (
            "leaderboard",
            "Leaderboard",
            f"Mean over the samples ± half-width of the {LEVEL:.0%} Student t-interval "
            "(hover a cell for n and the interval). The small number is the method's rank for "
            "that model and metric, respecting the metric's direction (\u2191 higher is "
            "better, \u2193 lower is better); the best is highlighted. Click a header to sort.",
            _leaderboard(data, scores, colours),
        ),
        (
            "curves",
            "Insertion and deletion curves",
            "The target score as pixels are inserted into a blank image (insertion: a fast "
            "rise is good) or deleted from the image (deletion: a fast fall is good), in order "
            "of attribution; mean over the samples.",
            _figure(figures["curves"], "curves", ""),
        ),
        (
            "heatmaps",
            "Attribution maps",
            "Each map over a grey copy of its input, scaled on its own (red positive, blue "
            "negative; sequential colours for non-negative maps); the ground-truth mask is "
            "outlined in green.",
            heatmaps,
        ),
        (
            "cost",
            "Cost",
            "Model passes (forward plus backward) and wall-clock seconds per image, for the "
            "explanation and for all the metrics together. Seconds depend on the machine and "
            "its load; passes do not.",
            _cost_table(costs, colours)
            + '<div class="grids"><div class="wide">'
            + _figure(
                figures["tradeoff"],
                "quality against cost",
                "Quality against cost: each method's mean metric with its 95% interval, "
                "against its explanation passes per image (log scale).",
            )
            + "</div><div>"
            + _figure(figures["cost"], "cost", "Explanation passes per image (log scale).")
            + "</div></div>",
        ),
        (
            "config",
            "Configuration",
            "The run's configuration, as recorded.",
            _config(data, exports),
        ),
    ]
    if data.findings:
        items = "".join(f"<li>{_e(finding)}</li>" for finding in data.findings)
        sections.insert(
            0,
            (
                "findings",
                "Findings",
                "What the suite concludes from this run's numbers.",
                f'<ul class="findings">{items}</ul>',
            ),
        )
        links.insert(0, ("findings", "Findings"))
    body = "".join(
        f'<section id="{anchor}"><h2>{_e(title)}</h2><p class="note">{_e(note)}</p>'
        f"{content}</section>"
        for anchor, title, note, content in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>faithmap report · {_e(data.run_id)}</title>"
        f"<style>{_asset('report.css')}</style></head>"
        f"<body>{_header(data, links)}<main>{body}</main>"
        "<footer>Written by faithmap. Self-contained: this page loads nothing from the "
        f"network.</footer><script>{_asset('report.js')}</script></body></html>\n"
    )
