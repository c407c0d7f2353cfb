"""The benchmark report: one self-contained HTML page, with CSV and PNG exports beside it.

:func:`write_report` turns a :class:`~faithmap.bench.report.data.ReportData` into

- ``<name>.html``: who made the run and when, a verdict per model, the leaderboard (means with
  95% Student t-intervals, ranks, and a mean rank over the cells every method has), the
  insertion/deletion curves (inline SVG with a checkbox legend), the attribution maps with the
  ground-truth masks and the true and predicted classes, the cost and the configuration;
  pictures are inline, so the page loads nothing from the network;
- ``<name>_leaderboard.csv`` and ``<name>_rows.csv``: the leaderboard and every measurement;
- ``<name>_curves.png``, ``<name>_heatmaps_<k>_<model>.png`` (the inputs, then one row of maps
  per method in the page's order), ``<name>_cost.png`` and ``<name>_tradeoff.png`` (mean metric
  against passes per image): the figures.
"""

from __future__ import annotations

import csv
import math
import re
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, fields
from pathlib import Path

from faithmap._worker_server import worker_context
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.report.figures import cost_figure, curves_figure, png_bytes, tradeoff_figure
from faithmap.bench.report.heatmaps import grid_png
from faithmap.bench.report.html import render_page
from faithmap.bench.report.palette import method_colours
from faithmap.bench.report.stats import CostEntry, Score, cost_table, leaderboard
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError

__all__ = ["LEADERBOARD_FIELDS", "write_report"]

LEADERBOARD_FIELDS = (
    "model",
    "metric",
    "method",
    "higher_is_better",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "rank",
)
"""Columns of the leaderboard CSV; ``ci_low`` and ``ci_high`` bound the 95% t-interval."""


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "model"


def _cell(value: float | int | bool | None) -> str | float | int | bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _write_leaderboard(path: Path, scores: list[Score]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(LEADERBOARD_FIELDS)
        for s in scores:
            values = (s.higher_is_better, s.n, s.mean, s.low, s.high, s.rank)
            writer.writerow([s.model, s.metric, s.method, *map(_cell, values)])


def _write_rows(path: Path, data: ReportData) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(ReportRow)])
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in asdict(row).items()} for row in data.rows)


def _cost_png(costs: list[CostEntry], methods: tuple[str, ...]) -> bytes | None:
    figure = cost_figure(costs, methods)
    return None if figure is None else png_bytes(figure)


def _curves_png(data: ReportData) -> bytes | None:
    figure = curves_figure(data)
    return None if figure is None else png_bytes(figure)


class _Drawn:
    """The cost and curves figures' PNGs, drawn in a process forked by the benchmark workers'
    fork server (:func:`faithmap._worker_server.worker_context`) while this one draws the
    rest: the cost figure first (the page needs it), then the curves (an export only). Where
    workers are spawned, or the helper fails, this process draws them itself."""

    def __init__(self, data: ReportData, costs: list[CostEntry], parallel: bool) -> None:
        self.data, self.costs = data, costs
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[str, Future[bytes | None]] = {}
        context = worker_context()
        if not parallel or context.get_start_method() != "forkserver":
            return
        try:
            self.pool = ProcessPoolExecutor(1, mp_context=context)
            self.futures["cost"] = self.pool.submit(_cost_png, costs, tuple(data.methods))
            self.futures["curves"] = self.pool.submit(_curves_png, data)
        except Exception:  # never the reason a report fails
            self.futures = {}

    def get(self, name: str) -> bytes | None:
        future = self.futures.get(name)
        if future is not None:
            try:
                return future.result()
            except Exception:  # never the reason a report fails
                pass
        if name == "cost":
            return _cost_png(self.costs, tuple(self.data.methods))
        return _curves_png(self.data)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def write_report(
    data: ReportData, out: str | Path, *, max_samples: int = 8, parallel: bool = False
) -> Path:
    """Write the report of a benchmark run as one HTML page plus CSV and PNG exports.

    Parameters
    ----------
    data : ReportData
        The run, as the benchmark's store gives it.
    out : str or Path
        The page to write, ending in ``.html``; its folder is created if needed. The exports
        are written into the same folder, named after the page.
    max_samples : int, default=8
        Samples shown per model in the attribution maps (the first ones).
    parallel : bool, default=False
        Draw the curves and trade-off figures in another process while this one draws the
        rest (the benchmark's driver, when its worker processes are forked by a fork server:
        forking another is then instant). The files are the same.

    Returns
    -------
    Path
        The page.

    Raises
    ------
    InvalidParameterError
        If ``out`` does not end in ``.html`` or ``max_samples`` is not an int >= 1.

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018 (insertion and deletion).
    .. [2] Student. "The probable error of a mean." Biometrika 6(1), 1908.

    Examples
    --------
    >>> import tempfile
    >>> from faithmap.bench.report.data import ReportRow
    >>> rows = [ReportRow(i, "cnn", "saliency", "insertion", v, 2, 0.01, 20, 0.1)
    ...         for i, v in enumerate([0.4, 0.6])]
    >>> data = ReportData("demo", {"n_samples": 2}, rows, {"insertion": True})
    >>> page = write_report(data, Path(tempfile.mkdtemp()) / "report.html")
    >>> for name in sorted(p.name for p in page.parent.iterdir()):
    ...     print(name)
    report.html
    report_cost.png
    report_leaderboard.csv
    report_rows.csv
    report_tradeoff.png
    """
    out = Path(out)
    if out.suffix.lower() != ".html":
        raise InvalidParameterError(
            f"The 'out' parameter of write_report must be a path ending in '.html'. Got "
            f"{str(out)!r} instead."
        )
    check_int(max_samples, "max_samples", "write_report", low=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    stem, folder = out.stem, out.parent
    scores, costs = leaderboard(data), cost_table(data)
    colours = method_colours(data.methods)
    exports = [f"{stem}_leaderboard.csv", f"{stem}_rows.csv"]
    _write_leaderboard(folder / exports[0], scores)
    _write_rows(folder / exports[1], data)

    def save(name: str, png: bytes | None) -> bytes | None:
        if png is not None:
            (folder / name).write_bytes(png)
            exports.append(name)
        return png

    drawn = _Drawn(data, costs, parallel)
    try:
        curves_name = f"{stem}_curves.png"
        if data.curves:  # the curves figure exists (drawn by the helper, written at the end)
            exports.append(curves_name)
        for k, model in enumerate(data.models):
            save(f"{stem}_heatmaps_{k + 1}_{_slug(model)}.png", grid_png(data, model, max_samples))
        tradeoff = tradeoff_figure(scores, costs, data.methods)
        tradeoff_png = None if tradeoff is None else png_bytes(tradeoff)
        figures = {
            "cost": save(f"{stem}_cost.png", drawn.get("cost")),
            "tradeoff": save(f"{stem}_tradeoff.png", tradeoff_png),
        }
        for k, (_, png) in enumerate(data.figures):
            save(f"{stem}_figure_{k + 1}.png", png)
        page = render_page(data, scores, costs, colours, figures, exports, max_samples=max_samples)
        out.write_text(page, encoding="utf-8")
        curves_png = drawn.get("curves") if data.curves else None
        if curves_png is not None:
            (folder / curves_name).write_bytes(curves_png)
    finally:
        drawn.close()
    return out
