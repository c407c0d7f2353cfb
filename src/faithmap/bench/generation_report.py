"""The generation suite's HTML report: per synthetic task, methods × generation metrics.

One self-contained page (inline style, no scripts, every text escaped): for each task
(``gpt:kv``, ``gpt:copy``, ``gpt:count``) a table of each method's mean of each metric over the
examples with the half-width of its 95 % Student-t interval, the best mean of each column in
bold (by the metric's direction), then the explanation cost (passes and seconds per example),
and the methods that refused the model with their reason.

References
----------
DeYoung et al., "ERASER", ACL 2020 (comprehensiveness, sufficiency); Petsiuk et al., "RISE",
BMVC 2018 (insertion, deletion).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from faithmap.bench.report.stats import LEVEL, mean_interval
from faithmap.bench.work import Row

REPORT_NAME = "report.html"
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:0.9em;margin-bottom:1.5em}"
    "th,td{border:1px solid #ddd;padding:0.3em 0.6em;text-align:right}"
    "th:first-child{text-align:left}.meta{color:#555}"
)


class ReportedConfig(Protocol):
    """What the report reads of a generation benchmark's configuration."""

    @property
    def out(self) -> Path: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    @property
    def methods(self) -> Sequence[str]: ...

    @property
    def metrics(self) -> Sequence[str]: ...

    @property
    def n_samples(self) -> int: ...


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(values: list[float], best: bool) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "<td>—</td>"
    text = f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {(high - low) / 2:.3f}"
    return f"<td><b>{text}</b></td>" if best else f"<td>{text}</td>"


def _table(rows: list[Row], methods: Sequence[str], metrics: Sequence[str]) -> str:
    values: dict[tuple[str, str], list[float]] = {}
    cost: dict[str, list[tuple[float, float]]] = {}
    higher = {row.metric: row.higher_is_better for row in rows}
    for row in rows:
        values.setdefault((row.method, row.metric), []).append(row.value)
        if row.metric == metrics[0]:
            passes = row.explain_forward + row.explain_backward
            cost.setdefault(row.method, []).append((passes, row.explain_seconds))
    shown = [m for m in methods if m in cost]
    best: dict[str, str] = {}
    for metric in metrics:
        means = {m: mean_interval(values.get((m, metric), []))[0] for m in shown}
        finite = {m: v for m, v in means.items() if not math.isnan(v)}
        if finite:
            pick = max if higher.get(metric, True) else min
            best[metric] = pick(finite, key=lambda m: finite[m])
    arrows = {m: "↑" if higher.get(m, True) else "↓" for m in metrics}
    head = "".join(f"<th>{_escape(m)} {arrows[m]}</th>" for m in metrics)
    body = []
    for method in shown:
        cells = "".join(
            _cell(values.get((method, metric), []), best.get(metric) == method)
            for metric in metrics
        )
        spent = cost[method]
        passes = sum(p for p, _ in spent) / len(spent)
        seconds = sum(s for _, s in spent) / len(spent)
        body.append(
            f"<tr><th>{_escape(method)}</th>{cells}<td>{passes:.0f}</td><td>{seconds:.3f}</td></tr>"
        )
    return (
        f"<table><thead><tr><th>method</th>{head}<th>passes/example</th><th>s/example</th>"
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def write_generation_report(
    config: ReportedConfig,
    rows: Sequence[Row],
    skipped: Mapping[str, str],
    *,
    command: str = "",
) -> Path:
    """Write ``config.out / "report.html"`` for a generation benchmark's rows; its path."""
    sections = []
    for model in config.models:
        found = [row for row in rows if row.model == model]
        if not found:
            continue
        refused = sorted(
            {
                task.split("/")[1]: why for task, why in skipped.items() if task.startswith(model)
            }.items()
        )
        notes = "".join(
            f'<p class="meta">{_escape(method)} refused: {_escape(why)}</p>'
            for method, why in refused
        )
        table = _table(found, config.methods, config.metrics)
        sections.append(f"<h2>{_escape(model)}</h2>{table}{notes}")
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>faithmap generation benchmark</title><style>{STYLE}</style></head><body>"
        "<h1>faithmap generation benchmark</h1>"
        f'<p class="meta">The built-in GPT on the synthetic tasks; {config.n_samples} examples '
        "per task, the correct answer teacher-forced, content tokens as features, [MASK] as "
        "removal. Each cell: the mean over examples of the metric's mean over generated steps, "
        f"± the half-width of its {LEVEL:.0%} Student-t interval; best of each column in bold. "
        f"hit_rate: the share of steps whose top feature is a known dependency.</p>"
        f'<p class="meta">{_escape(command)}</p>{"".join(sections)}</body></html>\n'
    )
    path = Path(config.out) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
