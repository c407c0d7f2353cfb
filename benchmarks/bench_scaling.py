"""Benchmark throughput: tasks per second in process and on Ray, and the store's cost per row.

Usage: ``python benchmarks/bench_scaling.py [--tasks 16] [--chunk 2] [--out PATH]``;
``--tiny`` runs a few small tasks only, to check the script works.

The tasks are those of ``faithmap bench`` on the built-in CNN (Saliency and Integrated
Gradients, insertion and deletion at their defaults, ``--chunk`` samples per task). Measured:

1. **local**: the in-process executor, torch at its own thread count and at 1 thread.
2. **ray-1, ray-2**: the Ray executor on a local cluster of 1 and 2 CPUs (one single-threaded
   task per CPU). Each cluster first runs the tasks once untimed (workers import torch, load
   the model, make the data), then the timed round. Cluster start-up is reported apart.
3. **scaling efficiency** of the added worker: ``(tasks/s at 2 workers) / (2 × tasks/s at 1)``
   (target ≥ 0.85 on an idle 2-core machine).
4. **store**: seconds per stored row of :meth:`faithmap.bench.Store.write` (rows, attribution
   maps, curves and the done-marker in one transaction), against the task's compute time.

Every executor writes each task to a fresh store, as ``run_bench`` does. Results are printed
and saved as JSON (default ``benchmarks/results/bench_scaling.json``) with the load average:
on a shared machine, rerun when it is above the core count.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from faithmap.bench import BenchConfig, Store, plan
from faithmap.bench.executors import local_results, ray_results
from faithmap.bench.plan import Task
from faithmap.bench.work import Job, TaskResult, run_task


def config(tasks: int, chunk: int, out: Path) -> BenchConfig:
    return BenchConfig(
        models=["cnn"],
        methods=["saliency", "integrated_gradients"],
        n_samples=max(tasks // 2, 1) * chunk,
        chunk_size=chunk,
        batch_size=32,
        out=out,
    )


def drain(results: Iterator[TaskResult], store: Store, configured: BenchConfig) -> float:
    """Seconds to receive every result and write it to the store."""
    run = store.open_run(configured)
    started = time.perf_counter()
    for result in results:
        store.write(run, result)
    return time.perf_counter() - started


def local(configured: BenchConfig, tasks: list[Task], threads: int | None) -> dict[str, Any]:
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    job = Job.of(configured)
    try:
        run_task(job, tasks[0])  # warm-up: model, data, batch paths
        with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
            seconds = drain(local_results(job, tasks), store, configured)
    finally:
        torch.set_num_threads(before)
    return {"threads": threads or before, "seconds": seconds, "tasks_per_s": len(tasks) / seconds}


def on_ray(configured: BenchConfig, tasks: list[Task], workers: int) -> dict[str, Any]:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - started
    job = Job.of(configured)
    try:
        with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
            warm = drain(ray_results(job, tasks), store, configured)
        with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
            seconds = drain(ray_results(job, tasks), store, configured)
    finally:
        ray.shutdown()
    return {
        "workers": workers,
        "startup_s": startup,
        "warm_up_s": warm,
        "seconds": seconds,
        "tasks_per_s": len(tasks) / seconds,
    }


def store_overhead(result: TaskResult, copies: int) -> dict[str, Any]:
    """Seconds per row and per task of writing ``copies`` copies of one task's results."""
    configured = config(2, result.task.size, Path("unused"))
    with tempfile.TemporaryDirectory() as folder, Store(folder) as store:
        run = store.open_run(configured)
        started = time.perf_counter()
        for k in range(copies):
            shift = (k + 1) * 1000
            task = dataclasses.replace(result.task, start=shift, stop=shift + result.task.size)
            rows = [dataclasses.replace(r, sample=r.sample + shift) for r in result.rows]
            store.write(run, dataclasses.replace(result, task=task, rows=rows))
        seconds = time.perf_counter() - started
        files = (store.path, store.path.with_name(store.path.name + "-wal"))
        size = sum(f.stat().st_size for f in files if f.exists())
    rows = copies * len(result.rows)
    return {
        "tasks": copies,
        "rows": rows,
        "seconds_per_row": seconds / rows,
        "seconds_per_task": seconds / copies,
        "task_compute_s": result.cost.seconds,
        "overhead_vs_compute": seconds / copies / max(result.cost.seconds, 1e-12),
        "bytes_per_task": size / copies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=2)
    parser.add_argument("--store-copies", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="4 tasks of 1 sample: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_scaling.json"))
    args = parser.parse_args()
    if args.tiny:
        args.tasks, args.chunk, args.store_copies = 4, 1, 20
    load_start = os.getloadavg()[0]
    configured = config(args.tasks, args.chunk, Path("unused"))
    tasks = plan(configured)
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "tasks": len(tasks),
        "chunk": args.chunk,
        "load_avg_start": load_start,
        "local": [local(configured, tasks, None), local(configured, tasks, 1)],
        "ray": [on_ray(configured, tasks, workers) for workers in (1, 2)],
    }
    one, two = (entry["tasks_per_s"] for entry in report["ray"])
    report["scaling_efficiency"] = two / (2 * one)
    report["store"] = store_overhead(run_task(Job.of(configured), tasks[0]), args.store_copies)
    report["load_avg_end"] = os.getloadavg()[0]

    print(f"{len(tasks)} tasks of {args.chunk} samples (load {load_start:.1f})")
    print(f"{'executor':<22}{'tasks/s':>10}{'seconds':>10}")
    for entry in report["local"]:
        print(
            f"{'local, ' + str(entry['threads']) + ' thread(s)':<22}"
            f"{entry['tasks_per_s']:>10.2f}{entry['seconds']:>10.2f}"
        )
    for entry in report["ray"]:
        print(
            f"{'ray, ' + str(entry['workers']) + ' worker(s)':<22}"
            f"{entry['tasks_per_s']:>10.2f}{entry['seconds']:>10.2f}"
            f"   (start {entry['startup_s']:.1f} s, warm-up {entry['warm_up_s']:.1f} s)"
        )
    print(f"scaling efficiency of the 2nd worker: {report['scaling_efficiency']:.2f}")
    store = report["store"]
    print(
        f"store: {store['seconds_per_row'] * 1e3:.3f} ms per row, "
        f"{store['seconds_per_task'] * 1e3:.2f} ms per task "
        f"({store['overhead_vs_compute']:.2%} of the task's compute), "
        f"{store['bytes_per_task'] / 1024:.0f} KiB per task"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
