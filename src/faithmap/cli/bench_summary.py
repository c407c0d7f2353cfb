"""The console summary of ``faithmap bench``: one line per (model, method) with each metric's
mean and the half-width of its 95 % interval, as the report computes them, then the cost."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from faithmap.bench import Row, summarize
from faithmap.bench.report.stats import LEVEL, mean_interval
from faithmap.cli.common import console


def print_summary(rows: list[Row], metrics: Sequence[str], samples: int) -> None:
    """One line per (model, method): each metric's mean ± the half-width of its 95 % interval
    (Student t, as the report), then the cost per image."""
    higher = {row.metric: row.higher_is_better for row in rows}
    values: dict[tuple[str, str, str], list[float]] = {}
    for found in rows:
        values.setdefault((found.model, found.method, found.metric), []).append(found.value)
    table = Table(
        title=f"faithmap bench: {samples} images; mean ± half-width of the {LEVEL:.0%} "
        "interval (Student t)"
    )
    for column in ("model", "method"):
        table.add_column(column, no_wrap=True)
    for metric in metrics:
        arrow = "↑" if higher.get(metric, True) else "↓"
        table.add_column(_header(f"{metric} {arrow}"), justify="right", no_wrap=True)
    for column in ("passes/img", "s/img", "metric s/img"):
        table.add_column(column, justify="right")
    for line in summarize(rows):
        table.add_row(
            line.model,
            line.method,
            *(_mean_interval(values.get((line.model, line.method, m), [])) for m in metrics),
            f"{line.passes_per_image:.0f}",
            f"{line.seconds_per_image:.3f}",
            f"{line.metric_seconds_per_image:.3f}",
        )
    # pipes: wide enough for every column (at least 150), so none is squeezed out
    wide = max(150, 40 + 16 * (len(metrics) + 3))
    (console if console.is_terminal else Console(width=wide)).print(table)


def _header(name: str, width: int = 13) -> str:
    """``name`` in lines of at most ``width`` characters, broken after underscores."""
    lines = [""]
    for part in name.replace("_", "_\0").split("\0"):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _mean_interval(values: list[float]) -> str:
    mean, low, high = mean_interval(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {(high - low) / 2:.3f}"
