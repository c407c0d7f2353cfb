"""Where tasks run: in this process, in worker processes of this machine, or as Ray remote
functions; results come back as they finish.

Every executor is a generator of :class:`~faithmap.bench.work.TaskResult` in completion order;
the driver (:func:`faithmap.bench.run_bench`) writes each one to the store as it arrives, so
only the driver ever touches the database. Worker processes pay off on a CPU because the
built-in models are small: at 64x64, a forward pass on two threads of one process is barely
faster than on one, while two one-thread processes do twice the work (``benchmarks/
default_bench_time.py`` measures the whole run). Ray is an optional dependency
(``pip install faithmap[ray]``); with no ``address`` a local cluster is started with
``workers`` CPUs, one task per CPU at a time.

References
----------
Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch
from tqdm import tqdm

from faithmap._worker_server import worker_context
from faithmap.bench.plan import Task
from faithmap.bench.work import Job, TaskResult, run_task
from faithmap.core.cost import Cost
from faithmap.errors import InvalidParameterError


def local_results(
    job: Job, tasks: Sequence[Task], *, needed: Callable[[Task], bool] = lambda task: True
) -> Generator[TaskResult, None, None]:
    """Run the tasks one after the other in this process.

    ``needed`` is asked again just before each task starts, so a concurrent run of the same
    configuration on the same store does not repeat a task the other has finished.
    """
    for task in tasks:
        if needed(task):
            yield run_task(job, task)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's (the pid was reused)
        return True
    return True


def _exit_with(driver: int) -> None:
    """End this worker once its driver is gone (killed), instead of idling forever. The driver
    is watched by its id: a forked worker's parent is the fork server, which lives on while
    any worker does."""
    while _alive(driver):
        time.sleep(1.0)
    os._exit(1)


def _start_worker(threads: int, environment: dict[str, str], driver: int) -> None:
    """A worker process's initialiser: the driver's environment (a forked worker has the fork
    server's, from when it started), its share of the machine's cores, and a watch on the
    driver (a killed driver's workers would otherwise wait for tasks that never come)."""
    os.environ.clear()
    os.environ.update(environment)
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with, args=(driver,), daemon=True).start()


def process_results(
    job: Job,
    tasks: Sequence[Task],
    *,
    workers: int,
    threads: int,
    needed: Callable[[Task], bool] = lambda task: True,
) -> Generator[TaskResult, None, None]:
    """Run the tasks in ``workers`` new processes of this machine, ``threads`` threads each.

    Each worker runs one task at a time; the next task is handed out (after asking ``needed``
    again, as :func:`local_results` does) only when one finishes, so a concurrent run of the
    same configuration never waits on work queued here. Workers are started with ``spawn``:
    a script that runs the benchmark must do so under ``if __name__ == "__main__":``, as for
    any Python multiprocessing. On Linux they are forked by a fork server that has imported
    the task code once (:func:`faithmap._worker_server.worker_context`). Closing the generator
    (an interrupted run) cancels the tasks not yet started; what finished is already in the
    store.
    """
    pool = ProcessPoolExecutor(
        workers,
        mp_context=worker_context(),
        initializer=_start_worker,
        initargs=(threads, dict(os.environ), os.getpid()),
    )
    queue, running = iter(tasks), dict[Future[TaskResult], Task]()

    def hand_out() -> None:
        for task in queue:
            if needed(task):
                running[pool.submit(run_task, job, task)] = task
                return

    try:
        for _ in range(workers):
            hand_out()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                del running[future]
                hand_out()
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_ray() -> None:
    """Raise a clear error when the optional dependency ``ray`` is missing."""
    if importlib.util.find_spec("ray") is None:
        raise InvalidParameterError(
            "The 'ray' executor needs Ray. Install it with `pip install faithmap[ray]` (or "
            "`pip install ray`), or use --executor local."
        )


def ray_results(
    job: Job, tasks: Sequence[Task], *, address: str | None = None, workers: int | None = None
) -> Generator[TaskResult, None, None]:
    """Run the tasks as Ray remote functions (one CPU each, and one GPU each when the job's
    device is CUDA: name it ``"cuda"``, as each task sees only its own GPU) and yield them as
    they finish.

    Parameters
    ----------
    job, tasks
        What to run.
    address : str, optional
        A running cluster's address (``"auto"``, ``"ray://host:10001"``); ``None`` starts a
        local cluster with ``workers`` CPUs, shut down again when the generator closes.
    workers : int, optional
        CPUs of the local cluster (``None``: Ray's default, every CPU of this machine).
    """
    check_ray()
    import ray

    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            options["num_cpus"] = workers
        ray.init(address=address, **options)
    try:
        gpus = 1 if job.device.startswith("cuda") else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(run_task)
        pending = [remote.remote(job, task) for task in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()


def with_progress(
    results: Iterable[TaskResult], *, total: int, done: int, enabled: bool
) -> Iterator[TaskResult]:
    """``results`` unchanged, with a progress bar (ETA, model passes per second) on stderr."""
    started, spent = time.perf_counter(), Cost()
    bar = tqdm(total=total, initial=done, disable=not enabled, unit="task", dynamic_ncols=True)
    with bar:
        for result in results:
            spent += result.cost
            elapsed = time.perf_counter() - started
            bar.set_description(f"{result.task.model}/{result.task.method}")
            bar.set_postfix(passes_s=f"{spent.passes / max(elapsed, 1e-9):.0f}")
            bar.update(1)
            yield result
