"""A stored run as :class:`~faithmap.bench.report.data.ReportData`, what the report shows.

Rows are taken as stored; attribution maps and curves are included for every (model, method)
and (model, method, metric) whose samples are all stored (a run still in progress shows its
finished pairs); the images and masks are remade from the run's configuration, which names
the data set and its seed.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018 (the insertion and deletion curves passed on to the report).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from faithmap.bench.sources import DataSource, data_source
from faithmap.bench.store import Run, Store
from faithmap.bench.work import Row, load_data
from faithmap.data import CLASS_NAMES
from faithmap.errors import InvalidParameterError

if TYPE_CHECKING:  # the report's package imports matplotlib, which workers never need
    from faithmap.bench.report.data import ReportData


def _complete(by_sample: dict[int, Tensor], samples: int) -> Tensor | None:
    if sorted(by_sample) != list(range(samples)):
        return None
    return torch.stack([by_sample[i] for i in range(samples)])


def _pair(task: str) -> tuple[str, str]:
    """(model, method) of a task id ``model/method/start-stop``."""
    model, method, _ = task.rsplit("/", 2)
    return model, method


def _predicted(rows: list[Row], samples: int) -> dict[str, list[int]]:
    """The class each model explained for each sample (its prediction in a benchmark run)."""
    found: dict[str, dict[int, int]] = {}
    for row in rows:
        found.setdefault(row.model, {})[row.sample] = row.target
    return {
        model: [by_sample[i] for i in range(samples)]
        for model, by_sample in found.items()
        if sorted(by_sample) == list(range(samples))
    }


def _stored_data(config: Mapping[str, Any]) -> DataSource:
    """The data a stored run used, from its recorded identity."""
    recorded = config["data"]
    if isinstance(recorded, str):
        return data_source(recorded)
    if recorded.get("path") is None:
        raise InvalidParameterError(
            f"The run used data given as tensors in Python ({recorded.get('name')!r}); its "
            "report needs them: call write_run_report(store, run, out, data=DataSource) with "
            "the same data."
        )
    fields = {k: recorded[k] for k in ("masks", "keep_aspect", "name") if k in recorded}
    if recorded.get("size"):
        fields["size"] = tuple(recorded["size"])
    return data_source(recorded["path"], **fields)


def report_data(
    store: Store, run: Run | None = None, *, data: DataSource | None = None
) -> ReportData:
    """Everything the report shows about ``run`` (default: the store's latest run).

    ``data`` is the run's data; ``None`` reads it again from what the run recorded (the
    built-in data, or the same folder).

    Raises
    ------
    InvalidParameterError
        If the run has no stored rows yet.
    """
    from faithmap.bench.report.data import ReportData, ReportRow

    run = run or store.run()
    with store.reading():
        rows, maps, curves = store.rows(run), store.maps(run), store.curves(run)
        findings, skipped = store.findings(run), store.skipped(run)
    if not rows:
        raise InvalidParameterError(
            f"Run {run.id} ({run.config_hash}) in {str(store.path)!r} has no finished task yet; "
            "there is nothing to report."
        )
    config = run.config
    samples = int(config["n_samples"])
    source = data or _stored_data(config)
    loaded = load_data(source, samples, int(config["data_seed"]))
    attributions = {
        key: stacked
        for key, found in maps.items()
        if (stacked := _complete(found, samples)) is not None
    }
    complete_curves: dict[tuple[str, str, str], tuple[Tensor, Tensor]] = {}
    for key, found in curves.items():
        stacked = _complete({i: curve for i, (_, curve) in found.items()}, samples)
        if stacked is not None:
            complete_curves[key] = (found[0][0], stacked)
    return ReportData(
        run_id=run.config_hash,
        config=config,
        findings=tuple(findings),
        rows=[
            ReportRow(
                sample=row.sample,
                model=row.model,
                method=row.method,
                metric=row.metric,
                value=row.value,
                expl_passes=row.explain_forward + row.explain_backward,
                expl_seconds=row.explain_seconds,
                metric_passes=row.metric_forward + row.metric_backward,
                metric_seconds=row.metric_seconds,
            )
            for row in rows
        ],
        higher_is_better={row.metric: row.higher_is_better for row in rows},
        curves=complete_curves,
        attributions=attributions,
        images=loaded.images,
        masks=loaded.masks,
        versions=run.versions,
        created=run.created,
        command=run.command,
        labels=None if loaded.labels is None else [int(v) for v in loaded.labels],
        predicted=_predicted(rows, samples),
        class_names=CLASS_NAMES if source.is_builtin else (),
        skipped={_pair(task): why for task, why in skipped.items()},
    )


REPORT_NAME = "report.html"
"""The report's file name inside a benchmark's output folder."""


def write_run_report(
    store: Store,
    run: Run | None,
    out: Path,
    *,
    data: DataSource | None = None,
    parallel: bool = False,
) -> Path | None:
    """Write the HTML report of ``run`` as ``out / "report.html"`` (exports beside it).

    Returns ``None`` when the run has no rows yet (no task finished, or only skipped ones).
    ``parallel``: draw two figures in another process (:func:`~faithmap.bench.report.
    write_report`), for a driver whose workers' fork server is running.
    """
    from faithmap.bench.report import write_report  # matplotlib: only the driver, at the end

    run = run or store.run()
    if len(store.done(run)) == len(store.skipped(run)):  # no task with rows yet
        return None
    return write_report(
        report_data(store, run, data=data), Path(out) / REPORT_NAME, parallel=parallel
    )
