"""The local executor's worker processes: when they are used, and that they change nothing but
the speed (same rows as this process, none lost or doubled when interrupted and resumed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from faithmap.bench import BenchConfig, Row, run_bench
from faithmap.bench import run as run_module
from faithmap.bench.run import local_workers
from faithmap.bench.store import Store
from faithmap.zoo import load_builtin

SMALL: dict[str, Any] = {
    "models": ["cnn"],
    "methods": ["saliency", "occlusion"],
    "metrics": ["insertion", "deletion"],
    "metric_params": {"insertion": {"steps": 4}, "deletion": {"steps": 4}},
    "n_samples": 4,
    "chunk_size": 1,
}
"""8 tasks of one sample each, 16 rows."""


def table(rows: list[Row]) -> dict[tuple[str, str, str, int], float]:
    return {(r.model, r.method, r.metric, r.sample): r.value for r in rows}


@pytest.mark.parametrize(
    ("workers", "pending", "expected"),
    [
        (None, 3, (1, 2)),  # under two tasks per core: this process, both threads
        (None, 4, (2, 1)),  # two tasks per core: one one-thread worker per core
        (None, 40, (2, 1)),
        (1, 40, (1, 2)),  # asked for this process only
        (3, 2, (2, 1)),  # never more workers than tasks
        (4, 40, (4, 1)),  # more workers than cores: one thread each
    ],
)
def test_local_workers_rule(
    monkeypatch: pytest.MonkeyPatch,
    workers: int | None,
    pending: int,
    expected: tuple[int, int],
) -> None:
    monkeypatch.setattr(run_module, "usable_cores", lambda: 2)
    assert local_workers(BenchConfig(workers=workers), pending) == expected


def test_a_gpu_run_stays_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_module, "usable_cores", lambda: 2)
    config = BenchConfig()
    object.__setattr__(config, "device", "cuda")  # no GPU here: the rule alone is checked
    assert local_workers(config, 40) == (1, 2)


def test_a_model_given_as_an_object_stays_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_module, "usable_cores", lambda: 2)
    given = BenchConfig(models=[load_builtin("cnn").eval()])
    assert local_workers(given, 40) == (1, 2)
    assert local_workers(BenchConfig(models=[load_builtin("cnn").eval()], workers=2), 40) == (2, 1)


def test_worker_processes_give_the_rows_of_this_process(tmp_path: Path) -> None:
    here = run_bench(
        BenchConfig(**SMALL, workers=1, out=tmp_path / "here"), progress=False, report=False
    )
    apart = run_bench(
        BenchConfig(**SMALL, workers=2, out=tmp_path / "apart"), progress=False, report=False
    )
    assert len(here) == len(apart) == 16
    assert list(table(here)) == list(table(apart))  # same rows, same order, none doubled
    # one thread per worker against two in this process: sums may round differently
    assert table(apart) == pytest.approx(table(here), abs=1e-6)


def test_an_interrupted_worker_run_resumes_without_loss_or_double(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    original = Store.write

    def write_then_stop(self: Store, run: Any, result: Any) -> bool:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(result.task.id)
        return original(self, run, result)

    config = BenchConfig(**SMALL, workers=2, out=tmp_path / "store")
    monkeypatch.setattr(Store, "write", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, progress=False, report=False)
    monkeypatch.setattr(Store, "write", original)
    with Store(config.out) as store:
        assert len(store.done(store.run())) == 3
    resumed = run_bench(config, progress=False, report=False)
    clean = run_bench(
        BenchConfig(**SMALL, workers=1, out=tmp_path / "clean"), progress=False, report=False
    )
    assert list(table(resumed)) == list(table(clean))
    assert table(resumed) == pytest.approx(table(clean), abs=1e-6)


def test_long_tasks_are_handed_out_first() -> None:
    from faithmap.bench.plan import longest_first, plan

    tasks = plan(BenchConfig())
    ordered = longest_first(tasks)
    assert sorted(t.id for t in ordered) == sorted(t.id for t in tasks)  # none lost or doubled
    cheap = {"saliency", "grad_cam", "lrp"}
    assert {t.method for t in ordered[-9:]} == cheap  # one-pass methods last
    assert not cheap & {t.method for t in ordered[:12]}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["faithmap", "bench"], True),
        (["faithmap", "bench", "--out", "x", "--suite", "full"], True),
        (["faithmap", "bench", "--suite", "roar"], False),  # runs no local workers
        (["faithmap", "bench", "--suite=bam"], False),
        (["faithmap", "bench", "--executor", "ray"], False),
        (["faithmap", "bench", "--workers", "1"], False),
        (["faithmap", "bench", "--help"], False),
        (["faithmap", "explain", "x.png"], False),
        (["faithmap"], False),
    ],
)
def test_which_command_lines_start_the_workers_early(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: bool
) -> None:
    from faithmap import _worker_server

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert _worker_server.likely_workers(argv) is expected


def test_the_console_script_starts_the_fork_server_before_importing_the_cli(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faithmap.cli
    from faithmap import console

    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(console, "start_early", lambda argv: calls.append(("early", *argv)))
    monkeypatch.setattr(faithmap.cli, "main", lambda: calls.append(("cli",)))
    monkeypatch.setattr(sys, "argv", ["faithmap", "bench"])
    console.main()
    assert calls == [("early", "faithmap", "bench"), ("cli",)]


def test_the_fork_server_preloads_the_module_slic_lives_in() -> None:
    # scikit-image loads subpackages lazily: preloading skimage.segmentation alone would leave
    # SLIC's import (about 0.6 s) to every worker's first region-based task
    from skimage.segmentation import slic

    from faithmap._worker_server import WORKER_MODULES

    assert slic.__module__ in WORKER_MODULES
