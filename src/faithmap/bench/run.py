"""The benchmark's driver: plan the tasks, run those not yet stored, write rows as they finish.

:func:`run_bench` splits a :class:`BenchConfig` into tasks (:func:`~faithmap.bench.plan.plan`),
opens the configuration's run in the store, skips the tasks it already holds, hands the rest
to an executor (in process, in worker processes, or Ray) and writes each task's results in one
transaction as soon as it comes back. At the end it exports the run's rows (``results.csv``,
``results.json``) and writes the HTML report.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018 (insertion and deletion, the default metrics).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Generator
from contextlib import closing

from faithmap._worker_server import worker_context
from faithmap.bench.collect import write_run_report
from faithmap.bench.config import BenchConfig
from faithmap.bench.executors import (
    check_ray,
    local_results,
    process_results,
    ray_results,
    with_progress,
)
from faithmap.bench.export import write_results
from faithmap.bench.plan import longest_first, plan
from faithmap.bench.store import Store
from faithmap.bench.work import Job, Row, TaskResult, load_model
from faithmap.core.threads import usable_cores


def ordered(rows: list[Row], config: BenchConfig) -> list[Row]:
    """Rows model-major, then method, metric and sample, in the configuration's order."""
    models, methods, metrics = (
        {name: i for i, name in enumerate(names)}
        for names in (config.models, config.methods, config.metrics)
    )
    return sorted(
        rows, key=lambda r: (models[r.model], methods[r.method], metrics[r.metric], r.sample)
    )


def local_workers(config: BenchConfig, pending: int) -> tuple[int, int]:
    """``(processes, threads each)`` for a local run of ``pending`` tasks; 1 process: this one.

    ``config.workers`` when given (at most one per task), sharing the cores. ``None`` chooses:
    on the CPU, with several cores and at least two tasks per core, one one-thread worker per
    core, since the benchmark's small models use a core each better than two cores together
    (starting the workers costs seconds, earned back from two tasks each); otherwise this
    process with every thread. A model given as a Python object keeps the run in this process
    unless ``workers`` says otherwise: each worker would hold a copy, and it may not pickle.
    Only the speed changes: rows computed with one thread or two agree to rounding
    (floating-point sums run in another order).
    """
    cores = usable_cores()
    named = all(config.model_source(name).model is None for name in config.models)
    if config.workers is not None:
        workers = max(1, min(config.workers, pending))
    elif named and config.device == "cpu" and cores > 1 and pending >= 2 * cores:
        workers = cores
    else:
        workers = 1
    return workers, max(1, cores // workers)


def run_bench(
    config: BenchConfig | None = None,
    *,
    progress: bool = True,
    report: bool = True,
    command: str | None = None,
) -> list[Row]:
    """Run the benchmark (resuming a stored run of the same configuration) and write its results.

    Parameters
    ----------
    config : BenchConfig, optional
        ``None`` runs the default benchmark, ``BenchConfig()``.
    progress : bool, default=True
        Show a progress bar (on stderr) over the tasks, with the ETA and passes per second.
    report : bool, default=True
        Write the HTML report into ``config.out`` at the end.
    command : str, optional
        The command line stored with a new run and shown in its report; ``None``: this
        process's command line (``sys.argv``).

    Returns
    -------
    list of Row
        The run's ``n_samples × models × methods × metrics`` rows, model-major, read back
        from the store (``config.out / "bench.sqlite"``). A method that does not apply to a
        model (it raises :class:`~faithmap.errors.ModelError`, e.g. Guided Backprop on a model
        without ReLU) has no rows for it; :meth:`Store.skipped` says why.
    """
    config = config or BenchConfig()
    if config.executor == "ray":
        check_ray()
    tasks = plan(config)
    for name in config.models:  # a missing model fails before any work
        load_model(config.model_source(name), config.batch_size)
    started = time.perf_counter()
    with Store(config.out) as store:
        run = store.open_run(config, command=shlex.join(sys.argv) if command is None else command)
        done = store.done(run)
        todo = [task for task in tasks if task.id not in done]
        job = Job.of(config)
        results: Generator[TaskResult, None, None]
        forked = False  # whether worker processes ran, forked by a fork server now running
        if config.executor == "ray":
            results = ray_results(
                job, longest_first(todo), address=config.address, workers=config.workers
            )
        elif (shares := local_workers(config, len(todo)))[0] > 1:
            forked = worker_context().get_start_method() == "forkserver"
            results = process_results(
                job,
                longest_first(todo),
                workers=shares[0],
                threads=shares[1],
                needed=lambda task: task.id not in store.done(run),
            )
        else:
            results = local_results(job, todo, needed=lambda task: task.id not in store.done(run))
        with closing(results):
            for result in with_progress(
                results, total=len(tasks), done=len(tasks) - len(todo), enabled=progress
            ):
                store.write(run, result)
        rows = ordered(store.rows(run), config)
        extra = {
            "run": run.id,
            "config_hash": run.config_hash,
            "versions": run.versions,
            "skipped": store.skipped(run),
        }
        write_results(config, rows, time.perf_counter() - started, extra=extra)
        if report:
            write_run_report(store, run, config.out, data=config.data, parallel=forked)
    return rows
