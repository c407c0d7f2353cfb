"""The benchmark's SQLite store: atomic tasks, no doubled rows, runs kept apart, concurrency."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import faithmap
from faithmap.bench import BenchConfig, Store, plan, run_bench
from faithmap.bench.collect import report_data
from faithmap.bench.run import ordered
from faithmap.bench.work import Job, Row, TaskResult, run_task

TINY: dict[str, Any] = {
    "models": ["cnn"],
    "methods": ["saliency", "integrated_gradients"],
    "method_params": {"integrated_gradients": {"steps": 4}},
    "metrics": ["insertion", "deletion"],
    "metric_params": {"insertion": {"steps": 4}, "deletion": {"steps": 4}},
    "n_samples": 4,
    "chunk_size": 2,
    "batch_size": 16,
}
"""1 model, 2 cheap methods, 4 samples in chunks of 2: 4 tasks of 2 samples × 2 metrics."""

RUN = "import json, sys\nfrom faithmap.bench import BenchConfig, run_bench\n" + (
    "run_bench(BenchConfig(**json.loads(sys.argv[1])), progress=False, report=False)\n"
)


def tiny(out: Path, **changes: Any) -> BenchConfig:
    return BenchConfig(**{**TINY, "out": out, **changes})


def as_table(rows: list[Row]) -> dict[tuple[str, str, str, int], float]:
    return {(r.model, r.method, r.metric, r.sample): r.value for r in rows}


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Row]]:
    """A clean run of :data:`TINY` (read only by the tests) and its rows."""
    out = tmp_path_factory.mktemp("clean")
    return out, run_bench(tiny(out), progress=False, report=False)


@pytest.fixture(scope="module")
def result() -> TaskResult:
    config = tiny(Path("unused"))
    return run_task(Job.of(config), plan(config)[0])


def test_a_task_is_written_once_with_its_maps_and_curves(
    tmp_path: Path, result: TaskResult
) -> None:
    config = tiny(tmp_path)
    with Store(tmp_path) as store:
        run = store.open_run(config)
        assert store.write(run, result) is True
        assert store.write(run, result) is False  # already done: nothing written
        assert store.done(run) == {"cnn/saliency/0-2"}
        assert store.rows(run) == result.rows  # every field back exactly, in order
        maps = store.maps(run)[("cnn", "saliency")]
        assert sorted(maps) == [0, 1]
        torch.testing.assert_close(torch.stack([maps[0], maps[1]]), result.maps, rtol=0, atol=0)
        curves = store.curves(run)
        assert sorted(curves) == [("cnn", "saliency", "deletion"), ("cnn", "saliency", "insertion")]
        fractions, curve = curves[("cnn", "saliency", "insertion")][1]
        torch.testing.assert_close(fractions, result.curves["insertion"][0], rtol=0, atol=0)
        torch.testing.assert_close(curve, result.curves["insertion"][1][1], rtol=0, atol=0)
        mode = store._connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert count(store.path, "results") == len(result.rows) == 2 * 2
    # the trapezoid area of the stored curve (x = k/4) is the stored insertion value of sample 1
    area = float((curve[1:] + curve[:-1]).sum() / 2 / 4)
    assert result.rows[2].sample == 1 and result.rows[2].value == pytest.approx(area, rel=1e-6)


def test_a_failing_write_leaves_nothing_behind(tmp_path: Path, result: TaskResult) -> None:
    doubled = TaskResult(result.task, result.rows + result.rows[:1], result.maps, {}, result.cost)
    with Store(tmp_path) as store:
        run = store.open_run(tiny(tmp_path))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            store.write(run, doubled)
        assert store.done(run) == set() and store.rows(run) == [] and store.maps(run) == {}
        assert store.write(run, result) is True  # the task is still to do, and now done


def test_undefined_values_come_back_as_nan(tmp_path: Path, result: TaskResult) -> None:
    rows = [Row(**{**r.__dict__, "value": math.nan}) for r in result.rows]
    with Store(tmp_path / "nan.sqlite") as store:
        run = store.open_run(tiny(tmp_path))
        store.write(run, TaskResult(result.task, rows, result.maps, {}, result.cost))
        assert all(math.isnan(row.value) for row in store.rows(run))


def test_a_changed_config_is_a_new_run_and_never_mixes(
    tmp_path: Path, clean: tuple[Path, list[Row]]
) -> None:
    shutil.copy(clean[0] / "bench.sqlite", tmp_path / "bench.sqlite")
    first = clean[1]
    second = run_bench(tiny(tmp_path, seed=1, metrics=["deletion"]), progress=False, report=False)
    assert len(first) == 4 * 2 * 2 and len(second) == 4 * 2 * 1
    with Store(tmp_path) as store:
        runs = store.runs()
        assert [r.id for r in runs] == [1, 2] and runs[0].config_hash != runs[1].config_hash
        assert runs[1].config["seed"] == 1 and sorted(runs[1].config["metrics"]) == ["deletion"]
        assert ordered(store.rows(runs[0]), tiny(tmp_path)) == first
        assert ordered(store.rows(runs[1]), tiny(tmp_path, metrics=["deletion"])) == second
        assert store.run(runs[0].config_hash[:6]) == runs[0] and store.run() == runs[1]
        with pytest.raises(faithmap.InvalidParameterError, match=r"Its runs are: 1 .*, 2 "):
            store.run("7")
    again = run_bench(tiny(tmp_path), progress=False, report=False)  # resumes run 1: no work
    assert again == first and count(tmp_path / "bench.sqlite", "results") == 4 * 2 * 3
    saliency = [r for r in first if r.method == "saliency" and r.metric == "insertion"]
    assert [r.sample for r in saliency] == [0, 1, 2, 3]
    assert all(r.explain_forward == 2.0 and r.explain_backward == 1.0 for r in saliency)
    assert all(r.metric_forward == 5.0 and r.metric_backward == 0.0 for r in saliency)


def test_two_concurrent_runs_on_one_store_do_not_corrupt_it(
    tmp_path: Path, clean: tuple[Path, list[Row]]
) -> None:
    argument = json.dumps({**TINY, "out": str(tmp_path)})
    processes = [subprocess.Popen([sys.executable, "-c", RUN, argument]) for _ in range(2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    path = tmp_path / "bench.sqlite"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Store(tmp_path) as store:
        (run,) = store.runs()
        assert as_table(store.rows(run)) == as_table(clean[1])
        assert len(store.done(run)) == len(plan(tiny(tmp_path)))
    assert count(path, "results") == len(clean[1]) and count(path, "maps") == 4 * 2


def test_report_data_holds_every_row_map_and_curve(clean: tuple[Path, list[Row]]) -> None:
    out, rows = clean
    with Store(out) as store:
        data = report_data(store)
    assert len(data.rows) == len(rows) and data.run_id == tiny(out).hash
    assert data.higher_is_better == {"insertion": True, "deletion": False}
    assert data.images is not None and tuple(data.images.shape) == (4, 3, 64, 64)
    assert data.masks is not None and tuple(data.masks.shape) == (4, 1, 64, 64)
    assert sorted(data.attributions) == [("cnn", "integrated_gradients"), ("cnn", "saliency")]
    fractions, curves = data.curves[("cnn", "saliency", "deletion")]
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0] and tuple(curves.shape) == (4, 5)
    values = [r.value for r in rows if r.method == "saliency" and r.metric == "deletion"]
    areas = (curves[:, 1:] + curves[:, :-1]).sum(1) / 8
    torch.testing.assert_close(areas.double(), torch.tensor(values, dtype=torch.float64))


def test_a_method_that_does_not_apply_is_a_skipped_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoRelu:
        def explain(self, model: object, inputs: torch.Tensor, target: object = None) -> None:
            raise faithmap.ModelError("Guided Backprop found no ReLU in the model.")

    monkeypatch.setattr("faithmap.bench.work.get_method", lambda name, **params: NoRelu())
    config = tiny(tmp_path, methods=["saliency"])
    skipped = run_task(Job.of(config), plan(config)[0])
    assert skipped.rows == [] and skipped.curves == {} and skipped.cost.passes == 0
    assert skipped.skipped == "Guided Backprop found no ReLU in the model."
    with Store(tmp_path) as store:
        run = store.open_run(config)
        assert store.write(run, skipped) is True
        assert store.done(run) == {"cnn/saliency/0-2"}
        assert store.skipped(run) == {"cnn/saliency/0-2": skipped.skipped}
        assert store.rows(run) == [] and store.maps(run) == {}
