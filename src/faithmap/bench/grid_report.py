"""The grid suite's outputs: the summary table, the scores (CSV, JSON) and the HTML report.

:func:`write_grid_results` writes what :func:`faithmap.bench.grid_suite.run_grid` measured:
``grid_scores.csv`` (every map), ``grid_summary.json`` (means, findings, time) and
``grid_report.html`` with one AggAtt figure per setting.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022
(AggAtt).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faithmap.bench.grid_findings import grouped_scores
from faithmap.bench.report import write_report
from faithmap.bench.report.aggatt import aggatt_figure
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.report.figures import png_bytes
from faithmap.zoo.grid_models import GRID_SETTINGS, corner_cells

if TYPE_CHECKING:
    from faithmap.bench.grid_suite import GridRun

__all__ = ["summary", "write_grid_results"]


def summary(scores: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean grid pointing game score and passes per map, per setting, method and layer."""
    grouped = grouped_scores(scores)
    passes = {(r["setting"], r["method"], r["layer"]): r["passes"] for r in scores}
    return [
        {
            "setting": setting,
            "method": method,
            "layer": layer,
            "n": len(values),
            "mean": sum(values) / len(values),
            "min": min(values),
            "passes_per_map": passes[(setting, method, layer)],
        }
        for (setting, method, layer), values in grouped.items()
    ]


def _report_data(run: GridRun, command: str) -> ReportData:
    rows = [
        ReportRow(
            sample=row["sample"],
            model=row["setting"],
            method=f"{row['method']}@{row['layer']}",
            metric="grid_pointing_game",
            value=row["score"],
            expl_passes=row["passes"],
            expl_seconds=float("nan"),
            metric_passes=0.0,
            metric_seconds=0.0,
        )
        for row in run.scores
    ]
    figures = []
    for setting in GRID_SETTINGS:
        bins = {key[1]: result for key, result in run.aggatt.items() if key[0] == setting}
        if bins:
            figure = aggatt_figure(bins, title=f"AggAtt, {setting}", scale=run.grids.scale)
            caption = (
                f"AggAtt on {setting}: one row per method, its maps rolled so the explained cell "
                "is the top-left one (dashed), sorted by grid pointing game score and averaged "
                "per percentile bin, best 2 % on the left; one colour scale per row."
            )
            figures.append((caption, png_bytes(figure)))
    cells = run.targets_cells
    masks = run.grids.cells[cells]
    per_grid = len(corner_cells(run.grids.scale))
    labels = [int(run.grids.labels[i // per_grid, c]) for i, c in enumerate(cells.tolist())]
    return ReportData(
        run_id="grid",
        config={"suite": "grid", **run.config},
        rows=rows,
        higher_is_better={"grid_pointing_game": True},
        attributions={(k[0], k[1]): v for k, v in run.examples.items()},
        images=run.inputs,
        masks=masks,
        findings=run.findings,
        command=command,
        labels=labels,
        class_names=run.grids.class_names,
        figures=figures,
    )


def write_grid_results(run: GridRun, out: str | Path, *, command: str = "") -> list[Path]:
    """Write ``grid_scores.csv`` (every map), ``grid_summary.json`` (means, findings, time)
    and the report ``grid_report.html`` (with the AggAtt figures) into the folder ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    scores, summary_path = folder / "grid_scores.csv", folder / "grid_summary.json"
    with scores.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(run.scores[0]))
        writer.writeheader()
        writer.writerows(run.scores)
    record = {
        "suite": "grid",
        "n_grids": len(run.grids),
        "maps_per_setting_method_layer": len(run.targets_cells),
        "chance": 1 / run.grids.scale**2,
        "seconds": round(run.seconds, 1),
        "summary": summary(run.scores),
        "findings": run.findings,
        "command": command,
    }
    summary_path.write_text(json.dumps(record, indent=2, allow_nan=True), encoding="utf-8")
    page = write_report(_report_data(run, command), folder / "grid_report.html")
    return [scores, summary_path, page]
