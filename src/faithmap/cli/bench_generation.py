"""``faithmap bench --suite generation``: the CLI glue of the generation suite.

:mod:`faithmap.cli.bench` hands the suite's flags here; the options that describe image data or
image models (``--data``, ``--models``, ``--size`` ...) do not apply and are refused.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from faithmap.bench.config import merge_params
from faithmap.bench.generation_report import REPORT_NAME
from faithmap.bench.generation_suite import (
    METHOD_PARAMS,
    GenerationBenchConfig,
    plan_generation,
    run_generation_bench,
)
from faithmap.bench.report.stats import mean_interval
from faithmap.bench.store import STORE_NAME
from faithmap.bench.work import Row
from faithmap.cli.common import (
    console,
    dotted_params,
    errors,
    refuse_flags,
    say,
    split_names,
    writable_folder,
)


def bench_generation(
    *,
    methods: str | None,
    metrics: str | None,
    samples: int | None,
    seed: int | None,
    data_seed: int | None,
    param: list[str] | None,
    metric_param: list[str] | None,
    chunk_size: int | None,
    batch_size: int | None,
    out: Path | None,
    progress: bool,
    report: bool,
    unused: Mapping[str, object],
) -> None:
    """Run the generation suite with the given flags; ``unused`` maps each flag that does not
    apply to its value (``None`` when not given)."""
    refuse_flags(
        unused,
        "generation",
        "it runs the built-in GPT "
        "on its synthetic tasks (kv, copy, count). Drop them, or pick another --suite.",
    )
    options: dict[str, Any] = {
        "methods": split_names(methods, "methods"),
        "metrics": split_names(metrics, "metrics"),
        "n_samples": samples,
        "seed": seed,
        "data_seed": data_seed,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "out": out,
    }
    options = {key: value for key, value in options.items() if value is not None}
    options["method_params"] = merge_params(
        METHOD_PARAMS, dotted_params(param, "--param", "method", "lime.n_samples=100")
    )
    options["metric_params"] = dotted_params(
        metric_param, "--metric-param", "metric", "soft_sufficiency.samples=16"
    )
    config = GenerationBenchConfig(**options)
    writable_folder(config.out)
    if progress:
        errors.print(
            f"{len(plan_generation(config))} task(s) (a task: one synthetic task, one method, up "
            f"to {config.chunk_size} examples, scored by every metric).",
            highlight=False,
            soft_wrap=True,
        )
    command = shlex.join(["faithmap", *sys.argv[1:]])
    rows = run_generation_bench(config, progress=progress, report=report, command=command)
    _print_summary(rows, config)
    written = [config.out / STORE_NAME, config.out / "results.csv", config.out / "results.json"]
    console.print("wrote " + ", ".join(map(str, written)), highlight=False, soft_wrap=True)
    if report and (config.out / REPORT_NAME).is_file():
        say(f"report: {(config.out / REPORT_NAME).resolve()} (open it in a browser)")


def _print_summary(rows: list[Row], config: GenerationBenchConfig) -> None:
    """One line per (task, method): each metric's mean ± the half-width of its 95 % interval."""
    values: dict[tuple[str, str, str], list[float]] = {}
    higher = {row.metric: row.higher_is_better for row in rows}
    for row in rows:
        values.setdefault((row.model, row.method, row.metric), []).append(row.value)
    table = Table(title=f"faithmap bench --suite generation: {config.n_samples} examples per task")
    table.add_column("task", no_wrap=True)
    table.add_column("method", no_wrap=True)
    for metric in config.metrics:
        arrow = "↑" if higher.get(metric, True) else "↓"
        table.add_column(f"{metric} {arrow}".replace("_", "_\n"), justify="right")
    pairs = dict.fromkeys((row.model, row.method) for row in rows)
    for model, method in pairs:
        cells = []
        for metric in config.metrics:
            mean, low, high = mean_interval(values.get((model, method, metric), []))
            cells.append(
                "—"
                if math.isnan(mean)
                else f"{mean:.3f}"
                if math.isnan(low)
                else f"{mean:.3f} ± {(high - low) / 2:.3f}"
            )
        table.add_row(model, method, *cells)
    (console if console.is_terminal else Console(width=170)).print(table)
