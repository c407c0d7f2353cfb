"""A run's rows as files: ``results.csv`` and ``results.json``, and their per-method summary.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018 (the insertion and deletion areas summarised here by default).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from faithmap.bench.work import Row


class ResultsConfig(Protocol):
    """What :func:`write_results` records: a :class:`BenchConfig`, or the generation suite's
    :class:`~faithmap.bench.generation_suite.GenerationBenchConfig`."""

    @property
    def out(self) -> Path: ...

    def record(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Summary:
    """Mean and standard deviation of each metric for one (model, method), and its cost.

    Samples where a metric is undefined (NaN) are left out of its mean and deviation.
    """

    model: str
    method: str
    metrics: Mapping[str, tuple[float, float]]
    passes_per_image: float
    seconds_per_image: float
    metric_seconds_per_image: float


def _mean_std(values: list[float]) -> tuple[float, float]:
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return math.nan, math.nan
    return statistics.fmean(defined), statistics.pstdev(defined) if len(defined) > 1 else 0.0


def summarize(rows: Sequence[Row]) -> list[Summary]:
    """Aggregate rows per (model, method), in the order they first appear."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.model, row.method), []).append(row)
    summaries = []
    for (model, method), group in groups.items():
        by_metric: dict[str, list[float]] = {}
        for row in group:
            by_metric.setdefault(row.metric, []).append(row.value)
        first_metric = [row for row in group if row.metric == group[0].metric]
        summaries.append(
            Summary(
                model=model,
                method=method,
                metrics={name: _mean_std(v) for name, v in by_metric.items()},
                passes_per_image=statistics.fmean(
                    r.explain_forward + r.explain_backward for r in first_metric
                ),
                seconds_per_image=statistics.fmean(r.explain_seconds for r in first_metric),
                metric_seconds_per_image=statistics.fmean(r.metric_seconds for r in group),
            )
        )
    return summaries


def write_results(
    config: ResultsConfig,
    rows: Sequence[Row],
    seconds: float,
    *,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``results.csv`` (the rows) and ``results.json`` (configuration, summary, rows).

    ``extra`` adds top-level entries to the JSON document (the run's hash and versions).
    """
    config.out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = config.out / "results.csv", config.out / "results.json"
    names = [f.name for f in fields(Row)]
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    document = {
        "config": config.record(),
        **(extra or {}),
        "seconds": seconds,
        "summary": [asdict(s) for s in summarize(rows)],
        "rows": [asdict(row) for row in rows],
    }
    json_path.write_text(json.dumps(document, indent=1))
    return csv_path, json_path
