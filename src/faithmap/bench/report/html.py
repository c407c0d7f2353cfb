"""The markup of the benchmark report: one self-contained HTML page.

Every name and value from the data goes through :func:`html.escape` (quotes included) before
it reaches the page, and pictures are inline ``data:`` URIs, so the page loads nothing from
anywhere: it can be mailed, archived or opened offline. Its stylesheet and script are the
package data files ``report.css`` and ``report.js``, written into the page itself. The script
only moves and toggles what the page already holds: it reorders table rows when a column header
is clicked, shows one model's maps at a time (tabs), shows or hides curves (the legend's
checkboxes, by index), and enlarges a clicked map by copying its ``src`` and its ``alt`` text
(as text, never as markup); no name from the data can reach it unescaped.
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

from faithmap.bench.report.curves import curves_html
from faithmap.bench.report.data import ReportData
from faithmap.bench.report.figures import colour_keys
from faithmap.bench.report.heatmaps import heatmaps_html
from faithmap.bench.report.stats import LEVEL, CostEntry, Score
from faithmap.bench.report.summary import RankSummary, rank_summary, verdicts
from faithmap.bench.report.trust import trust_html

__all__ = ["render_page"]


@cache
def _asset(name: str) -> str:
    """The text of the package data file ``name`` (``report.css`` or ``report.js``)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


_TEXT = ' data-kind="text"'
_LIGHTBOX = (
    '<div class="lightbox" hidden><figure><img alt="">'
    '<figcaption></figcaption></figure><p class="note">Click or press Escape to close.</p></div>'
)
"""The viewer a clicked map opens in (filled by the script)."""


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
    made = [
        f"created {_e(data.created.replace('T', ' '))}" if data.created else "",
        f"faithmap {_e(data.versions['faithmap'])}" if "faithmap" in data.versions else "",
        f"by <code>{_e(data.command)}</code>" if data.command else "",
    ]
    return (
        '<header class="hero"><div class="brand">faithmap benchmark report</div>'
        f"<h1>Run <code>{_e(data.run_id)}</code></h1>"
        f'<div class="made">{" · ".join(m for m in made if m)}</div>'
        f'<div class="facts">{fact_html}</div><nav>{nav}</nav></header>'
    )


def _leaderboard(
    data: ReportData, scores: Sequence[Score], colours: Mapping[str, str], summary: RankSummary
) -> str:
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
            f'<th class="sortable" data-col="{k + 2}" data-first="{first}" '
            f'title="{_e(metric)}: {direction}">{_e(metric)} {arrow}</th>'
        )
    cells = len(summary.cells)
    head = (
        f'<thead><tr class="group"><th></th><th colspan="1">summary</th>{group}</tr><tr>'
        '<th class="sortable" data-col="0" data-first="asc" data-kind="text">method</th>'
        f'<th class="sortable sorted-asc summary" data-col="1" data-first="asc" '
        f'title="mean of the ranks over the {cells} model × metric cells where every method has '
        f'a result; 1 is best">mean rank<br><small>lower is better · {cells} cells</small></th>'
        f"{''.join(heads)}</tr></thead>"
    )
    ranks = summary.mean_rank
    top = min((r for r in ranks.values() if not math.isnan(r)), default=math.nan)
    order = sorted(data.methods, key=lambda m: (math.isnan(ranks[m]), ranks[m]))
    body = []
    for method in order:
        row = [
            f'<td class="method" data-sort="{_e(method)}"><span class="swatch" '
            f'style="background:{colours[method]}"></span>{_e(method)}</td>',
            f'<td class="{"meanrank best" if ranks[method] == top else "meanrank"}" '
            f'data-sort="{_sort_key(ranks[method])}">{_number(ranks[method], 2)}</td>',
        ]
        for model, metric in columns:
            score = found.get((model, metric, method))
            if score is None or math.isnan(score.mean):
                undefined = "undefined for every sample" if score is not None else "no result"
                why = data.skipped.get((model, method), undefined)
                row.append(f'<td class="missing" data-sort="" title="{_e(why)}">—</td>')
                continue
            half = (score.high - score.low) / 2
            interval = "" if math.isnan(half) else f'<span class="ci">± {_number(half)}</span>'
            best = ' class="best"' if score.rank == 1 else ""
            title = f"n = {score.n}; {LEVEL:.0%} CI [{_number(score.low)}, {_number(score.high)}]"
            row.append(
                f'<td{best} data-sort="{_sort_key(score.mean)}" title="{_e(title)}">'
                f'{_number(score.mean)}{interval}<span class="rank">{score.rank}</span></td>'
            )
        body.append(f"<tr>{''.join(row)}</tr>")
    return (
        '<div class="scroll"><table class="sortable leaderboard">'
        f"{head}<tbody>{''.join(body)}</tbody></table></div>{_left_out(summary, len(data.methods))}"
    )


def _left_out(summary: RankSummary, methods: int) -> str:
    """What the mean rank is taken over, and the cells it leaves out, by model."""
    text = (
        f"The mean rank is taken over the {len(summary.cells)} model × metric cells where all "
        f"{methods} methods have a result, so every method is compared on the same cells."
    )
    by_model: dict[str, tuple[list[str], set[str]]] = {}
    for (model, metric), lacking in summary.left_out.items():
        metrics, missing = by_model.setdefault(model, ([], set()))
        metrics.append(metric)
        missing.update(lacking)
    parts = [
        f"{model} ({', '.join(metrics)}: no result for {', '.join(sorted(missing))})"
        for model, (metrics, missing) in by_model.items()
    ]
    if parts:
        text += " Left out: " + "; ".join(parts) + "."
    return f'<p class="note summary-note">{_e(text)}</p>'


def _verdicts(scores: Sequence[Score], models: Sequence[str]) -> str:
    items = "".join(
        f"<li><b>{_e(model)}</b>: {_e(sentence)}</li>"
        for model, sentence in verdicts(scores, models).items()
    )
    return f'<ul class="verdicts">{items}</ul>'


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
    *,
    max_samples: int = 8,
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
        ``"cost"`` and ``"tradeoff"`` to PNG bytes or None.
    exports : sequence of str
        File names of the exports written beside the page, linked from it.
    max_samples : int, default=8
        Samples shown per model in the attribution maps (the first ones).

    Returns
    -------
    str

    References
    ----------
    .. [1] Student. "The probable error of a mean." Biometrika 6(1), 1908 (the intervals).
    """
    links = [
        ("verdict", "Verdict"),
        ("trust", "Trust"),
        ("leaderboard", "Leaderboard"),
        ("curves", "Curves"),
        ("heatmaps", "Maps"),
        ("cost", "Cost"),
        ("config", "Config"),
    ]
    curves = curves_html(data, colours)
    maps = heatmaps_html(data, colours, max_samples)
    interval = f"{LEVEL:.0%} interval"
    sections = [
        (
            "verdict",
            "Verdict",
            f"Per model: the method with the best mean rank in each family of metrics, and, "
            f"for each metric, the methods whose mean lies inside the best method's {interval} "
            "(not separable from it with this many samples).",
            _verdicts(scores, data.models),
        ),
        (
            "trust",
            "Which method to trust",
            "Per family of metrics, each method's mean rank over the cells every method has "
            "(1 is best) with its 95% paired-bootstrap interval over the images; two methods "
            "whose intervals overlap are not separated by this run. Below, how far the "
            "metrics agree on the order of the methods.",
            trust_html(data, _e, colours),
        ),
        (
            "leaderboard",
            "Leaderboard",
            f"Each cell: the mean over the samples ± the half-width of its {interval} (Student "
            "t; hover for n and the bounds), and the method's rank for that model and metric "
            "among the methods with a result, respecting the metric's direction (\u2191 higher "
            "is better, \u2193 lower is better); the best is highlighted. Click a header to "
            "sort (\u25b2 smallest first, \u25bc largest first).",
            _leaderboard(data, scores, colours, rank_summary(scores, data.methods)),
        ),
        (
            "curves",
            "Insertion and deletion curves",
            "The target score as pixels are inserted into a blurred image (insertion: a fast "
            "rise is good) or deleted from the image (deletion: a fast fall is good), most "
            "positive attribution first; mean over the samples. Tick methods or families in "
            "the legend to compare a few; hover a line for its method.",
            curves or '<p class="note">No curves in this run.</p>',
        ),
        (
            "heatmaps",
            "Attribution maps",
            "One tab per model; one row per method (the same order on every model), one column "
            "per sample with its true and predicted class. Each map over a grey copy of its "
            "input, scaled on its own (red positive, blue negative; sequential colours for "
            "non-negative maps); the ground-truth mask is outlined in green. Click a map to "
            "enlarge it.",
            f"{_keys()}{maps}{_LIGHTBOX}"
            if maps
            else '<p class="note">No attribution maps in this run.</p>',
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
                f"Quality against cost: each method's mean metric with its {interval}, "
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
    if data.figures:
        pictures = "".join(_figure(png, caption, caption) for caption, png in data.figures)
        sections.append(("figures", "Figures", "Figures the suite draws.", pictures))
        links.append(("figures", "Figures"))
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
