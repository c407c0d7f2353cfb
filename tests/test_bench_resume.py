"""A benchmark killed with SIGKILL at any moment, a write included, resumes with no row lost or
doubled: the rows equal those of a clean run."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from faithmap.bench import BenchConfig, Row, plan, run_bench

TINY: dict[str, Any] = {
    "models": ["cnn"],
    "methods": ["saliency", "integrated_gradients"],
    "method_params": {"integrated_gradients": {"steps": 4}},
    "metrics": ["insertion", "deletion"],
    "metric_params": {"insertion": {"steps": 4}, "deletion": {"steps": 4}},
    "n_samples": 4,
    "chunk_size": 1,
    "batch_size": 16,
}
"""1 model, 2 cheap methods, 4 samples one per task: 8 tasks, 16 rows."""

SCRIPT = """
import json, sys, time
from faithmap.bench import BenchConfig, run_bench
from faithmap.bench.store import Store

if sys.argv[2] == "hang-in-write":  # stop inside the first task's write, before its commit
    original = Store.transaction

    def hanging(self, work):
        def then_hang(connection):
            value = work(connection)
            if value is True:
                print("in-write", flush=True)
                time.sleep(600)
            return value

        return original(self, then_hang)

    Store.transaction = hanging
run_bench(BenchConfig(**json.loads(sys.argv[1])), progress=False, report=False)
"""


def start(out: Path, mode: str = "plain") -> subprocess.Popen[str]:
    argument = json.dumps({**TINY, "out": str(out)})
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, argument, mode], stdout=subprocess.PIPE, text=True
    )


def kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.stdout is not None
    process.stdout.close()


def count(path: Path, query: str) -> int:
    """A count from the committed state of the store (0 while it does not exist yet)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as connection:
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # no file or no table yet
        return 0


def as_table(rows: list[Row]) -> dict[tuple[str, str, str, int], float]:
    return {(r.model, r.method, r.metric, r.sample): r.value for r in rows}


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> list[Row]:
    out = tmp_path_factory.mktemp("clean")
    return run_bench(BenchConfig(**{**TINY, "out": out}), progress=False, report=False)


def check_resumed(out: Path, clean: list[Row]) -> None:
    resumed = run_bench(BenchConfig(**{**TINY, "out": out}), progress=False, report=False)
    assert len(resumed) == len(clean) == 4 * 2 * 2
    assert as_table(resumed) == as_table(clean)  # same keys, same values, bit for bit
    path = out / "bench.sqlite"
    assert count(path, "SELECT COUNT(*) FROM results") == len(clean)  # nothing doubled
    assert count(path, "SELECT COUNT(*) FROM tasks") == len(plan(BenchConfig(**TINY)))
    assert count(path, "SELECT COUNT(*) FROM maps") == 4 * 2
    assert count(path, "SELECT COUNT(*) FROM curves") == 4 * 2 * 2
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_killed_inside_a_write_the_task_is_all_gone_and_resumes(
    tmp_path: Path, clean: list[Row]
) -> None:
    process = start(tmp_path, "hang-in-write")
    assert process.stdout is not None
    assert process.stdout.readline() == "in-write\n"  # rows, maps, curves, marker: not committed
    path = tmp_path / "bench.sqlite"
    kill(process)
    for table in ("tasks", "results", "maps", "curves"):
        assert count(path, f"SELECT COUNT(*) FROM {table}") == 0
    check_resumed(tmp_path, clean)


def test_killed_at_random_points_resumes_to_the_clean_rows(
    tmp_path: Path, clean: list[Row]
) -> None:
    rng = random.Random(20260601)
    path, done, cut_short = tmp_path / "bench.sqlite", 0, []
    for _ in range(3):
        target = done + rng.randint(1, 2)  # kill soon after this many tasks are stored
        process = start(tmp_path)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if count(path, "SELECT COUNT(*) FROM tasks") >= target:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.02))  # somewhere in the next task: compute or write
        alive = process.poll() is None
        kill(process)
        finished = count(path, "SELECT COUNT(*) FROM tasks")
        assert finished >= done
        assert (
            count(path, "SELECT COUNT(*) FROM results") == finished * 1 * 2
        )  # 1 sample, 2 metrics
        cut_short.append(alive and finished < 8)
        done = finished
    assert cut_short[0]  # the first run really was killed half-way
    check_resumed(tmp_path, clean)
