"""The batch-size calibration: bounded by the job, and cached across processes in a file.

No timed assertions: budgets are checked against a fake clock that the fake model advances.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import faithmap
from faithmap import Model
from faithmap.core import batch_size_cache, batching
from faithmap.core.batching import (
    SMALL_JOB,
    Calibration,
    MeasuredSizes,
    cache_file,
    fastest_batch_size,
    fingerprint,
)
from faithmap.core.cost import Cost, Ledger

SCRIPT = textwrap.dedent(
    """
    import json, torch
    from torch import nn
    import faithmap

    class Net(nn.Module):  # nested code in forward: its fingerprint must not hold addresses
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
            self.head = nn.Linear(4 * 8 * 8, 3)

        def forward(self, x):
            return self.head(sum(layer(x) for layer in [self.layers]))

    torch.manual_seed(0)
    net = Net()
    x = torch.rand(4, 3, 8, 8)
    explanation = faithmap.explain(net, x, method="integrated_gradients", steps=8)
    sizes = faithmap.Model(net).measured_batch_sizes
    print(json.dumps({
        "calibration_seconds": explanation.cost.calibration_seconds,
        "sizes": {str(key): value for key, value in sizes.items()},
    }))
    """
)


def small_net(out: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, out))


def entries(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "batch_sizes.json").read_text())
    assert data["version"] == 1
    result: dict[str, Any] = data["entries"]
    return result


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", str(folder))
    return folder


def run_script(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, check=True, timeout=300
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_second_process_with_the_same_cache_measures_nothing(cache: Path, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    first = run_script(script)
    assert first["calibration_seconds"] > 0 and (cache / "batch_sizes.json").exists()
    second = run_script(script)
    assert second["calibration_seconds"] == 0
    assert second["sizes"] == first["sizes"] and len(first["sizes"]) == 1


def test_another_module_of_the_same_architecture_reuses_the_file(cache: Path) -> None:
    x = torch.rand(40, 3, 4, 4)
    first = Model(small_net())
    first.outputs(x)
    assert first.ledger.calibration_seconds > 0
    other = small_net()  # new weights, same architecture: the same speed
    second = Model(other)
    second.outputs(x)
    assert second.ledger.calibration_seconds == 0
    assert second.measured_batch_sizes == first.measured_batch_sizes
    assert len(entries(cache)) == 1


def test_a_corrupt_cache_file_is_ignored_and_rewritten(cache: Path) -> None:
    cache.mkdir()
    for junk in ("{not json", '{"version": 1, "entries": []}', "[1, 2]", "\x00\xff"):
        (cache / "batch_sizes.json").write_text(junk)
        model = Model(small_net())
        model.outputs(torch.rand(40, 3, 4, 4))
        assert model.ledger.calibration_seconds > 0
        assert len(entries(cache)) == 1


def test_an_invalid_entry_is_measured_again(cache: Path) -> None:
    net = small_net()
    Model(net).outputs(torch.rand(40, 3, 4, 4))
    (key,) = entries(cache)
    broken = {"version": 1, "entries": {key: {"size": "many", "covered": 64, "per_sample": {}}}}
    (cache / "batch_sizes.json").write_text(json.dumps(broken))
    model = Model(small_net())
    model.outputs(torch.rand(40, 3, 4, 4))
    assert model.ledger.calibration_seconds > 0
    assert isinstance(entries(cache)[key]["size"], int)


def test_the_cache_is_keyed_by_input_shape_and_pass_kind(cache: Path) -> None:
    def net() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    Model(net()).outputs(torch.rand(40, 3, 4, 4))
    same = Model(net())
    same.outputs(torch.rand(40, 3, 4, 4))
    assert same.ledger.calibration_seconds == 0
    same.outputs(torch.rand(40, 3, 6, 6))  # another shape: measured again
    assert same.ledger.calibration_seconds > 0
    assert len(entries(cache)) == 2
    explanation = faithmap.explain(net(), torch.rand(4, 3, 4, 4), steps=8)  # 32 gradient rows
    assert explanation.cost.calibration_seconds > 0  # another pass kind: measured again
    kinds = sorted(key.split("|")[4] for key in entries(cache))
    assert kinds == ["forward", "forward", "forward_backward"]


def test_a_disabled_cache_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for off in ("off", "0", "false", "none", "OFF"):
        monkeypatch.setenv("FAITHMAP_CACHE_DIR", off)
        assert cache_file() is None
        model = Model(small_net())
        model.outputs(torch.rand(40, 3, 4, 4))
        assert model.ledger.calibration_seconds > 0
    assert list(tmp_path.rglob("*")) == []


def test_the_default_cache_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAITHMAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_file() == tmp_path / "xdg" / "faithmap" / "batch_sizes.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_file() == tmp_path / "home" / ".cache" / "faithmap" / "batch_sizes.json"


def test_an_unwritable_cache_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", str(blocker))
    model = Model(small_net())
    assert model.outputs(torch.rand(40, 3, 4, 4)).shape == (40, 3)
    assert blocker.read_text() == "not a folder"


def test_a_plain_callable_is_measured_in_process_only(cache: Path) -> None:
    layer = small_net()

    def call(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = layer(x)
        return out

    model = Model(call)
    model.outputs(torch.rand(40, 3, 4, 4))
    assert model.ledger.calibration_seconds > 0 and model.measured_batch_sizes
    assert not cache.exists()
    assert fingerprint(call) is None


def test_the_fingerprint_is_the_architecture_not_the_weights() -> None:
    torch.manual_seed(0)
    a, b = small_net(), small_net()
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(small_net(out=5))  # another parameter shape
    strided = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2))
    assert fingerprint(strided) != fingerprint(nn.Sequential(nn.Conv2d(3, 4, 3, stride=1)))
    assert fingerprint(a) != fingerprint(small_net().double())  # another dtype


def test_small_jobs_run_in_one_call_unmeasured(cache: Path) -> None:
    model = Model(small_net())
    model.outputs(torch.rand(SMALL_JOB, 3, 4, 4))
    assert model.ledger.calibration_seconds == 0 and model.measured_batch_sizes == {}
    assert not cache.exists()


def test_calibration_seconds_reach_the_explanations_cost(cache: Path) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.rand(4, 3, 8, 8)
    first = faithmap.explain(net, x, method="integrated_gradients", steps=8)
    assert first.cost.calibration_seconds > 0
    assert "calibration_seconds=" in repr(first.cost)
    again = faithmap.explain(net, x, method="integrated_gradients", steps=8)
    assert again.cost.calibration_seconds == 0


def test_cost_arithmetic_keeps_calibration_apart() -> None:
    total = Cost(1, 2, 3.0, 0.5) + Cost(1, 0, 1.0, 0.25)
    assert total == Cost(2, 2, 4.0, 0.75)
    assert total - Cost(1, 0, 1.0, 0.25) == Cost(1, 2, 3.0, 0.5)
    ledger = Ledger()
    with ledger.track() as tracker:
        ledger.forward += 3
        ledger.calibration_seconds += 0.5
    assert tracker.cost.forward == 3 and tracker.cost.calibration_seconds == 0.5


# ------------------------------------------------------------------ budgets, on a fake clock
class FakeClock:
    """Stands in for the ``time`` module inside ``faithmap.core.batching``."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return 1e9 + self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(batching, "time", fake)
    return fake


def overhead_model(clock: FakeClock, calls: dict[int, int], per_call: float = 8e-3) -> Any:
    """``per_call`` seconds per call plus 1 ms per row: every doubling gains, less and less."""

    def run(batch: torch.Tensor) -> None:
        size = batch.shape[0]
        calls[size] = calls.get(size, 0) + 1
        clock.now += per_call + 1e-3 * size

    return run


def test_without_a_budget_the_scan_stops_when_the_gain_is_below_noise(clock: FakeClock) -> None:
    calls: dict[int, int] = {}
    run = overhead_model(clock, calls, per_call=1e-3)
    best, timings = fastest_batch_size(run, torch.zeros(1, 2))
    # ms per sample: 2, 1.5, 1.25, 1.125, 1.0625, then 1.031 and 1.016, each within 5% of 1.0625
    assert max(timings) == 64 and best == 64  # the largest of those within noise of the best


def test_a_small_job_times_only_what_its_budget_allows(clock: FakeClock) -> None:
    calls: dict[int, int] = {}
    plan = Calibration(rows=48)
    candidates = (1, 2, 4, 8, 16, 32, 64)
    best, timings = fastest_batch_size(
        overhead_model(clock, calls), torch.zeros(1, 2), candidates=candidates, calibration=plan
    )
    assert clock.now <= plan.budget(min(timings.values())) * 1.5  # one step past, at most
    assert max(timings) < 64 and not plan.complete
    assert plan.timings == timings
    # the budget ran out while every doubling gained: the next size is the bet
    assert best == 2 * max(timings)


def test_a_large_job_scans_further_than_a_small_one(clock: FakeClock) -> None:
    small, large = Calibration(rows=48), Calibration(rows=100_000)
    fastest_batch_size(overhead_model(clock, {}), torch.zeros(1, 2), calibration=small)
    fastest_batch_size(overhead_model(clock, {}), torch.zeros(1, 2), calibration=large)
    assert max(large.timings) > max(small.timings) and large.complete


def test_known_sizes_are_not_timed_again(clock: FakeClock) -> None:
    calls: dict[int, int] = {}
    known = {1: 9e-3, 2: 5e-3, 4: 3e-3}
    plan = Calibration(rows=100_000, known=known)
    fastest_batch_size(overhead_model(clock, calls), torch.zeros(1, 2), calibration=plan)
    assert not set(calls) & set(known) and set(known) <= set(plan.timings)


def test_a_larger_job_extends_the_measurement(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", "off")
    calls: dict[int, int] = {}
    run = overhead_model(clock, calls)
    sizes = MeasuredSizes({}, {}, None)
    sample = torch.zeros(1, 2)

    def measure(candidates: tuple[int, ...]) -> int:
        return fastest_batch_size(run, sample, candidates=candidates)[0]

    sizes.size_for(sample, False, 48, measure)
    ((_, covered),) = sizes.table.values()
    assert covered == 64
    first_calls = dict(calls)
    calls.clear()
    assert sizes.size_for(sample, False, 64, measure) and calls == {}  # covered: not measured
    sizes.size_for(sample, False, 100_000, measure)
    ((_, covered),) = sizes.table.values()
    assert covered == 1024 and calls and not set(calls) & {s for s in first_calls if s < 8}
    calls.clear()
    measured: list[tuple[int, ...]] = []

    def record(candidates: tuple[int, ...]) -> int:
        measured.append(candidates)
        return 1

    sizes.size_for(sample, False, 200_000, record)
    assert measured == [] and calls == {}  # beyond the last candidate: nothing left to time


def test_concurrent_writers_never_leave_a_broken_file(cache: Path) -> None:
    import threading

    path = cache / "batch_sizes.json"

    def write(i: int) -> None:
        for j in range(10):
            batch_size_cache.write_cache(path, f"key-{i}-{j}", 4, 64, {1: 1e-3, 2: 6e-4})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = entries(cache)  # valid JSON: some entries may be lost, never the file
    assert written and all(value["size"] == 4 for value in written.values())
    assert [p.name for p in cache.iterdir()] == ["batch_sizes.json"]  # no temporary files left


def test_invalid_and_oldest_entries_are_dropped_on_write(
    cache: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_size_cache, "MAX_CACHE_ENTRIES", 2)
    path = cache / "batch_sizes.json"
    cache.mkdir()
    path.write_text(json.dumps({"version": 1, "entries": {"bad": {"size": -1}, "worse": 3}}))
    for i in range(3):
        clock.now += 1.0
        batch_size_cache.write_cache(path, f"key-{i}", 4, 64, {1: 1e-3})
    assert sorted(entries(cache)) == ["key-1", "key-2"]


def test_an_explicit_long_call_limit_holds_within_a_budget(clock: FakeClock) -> None:
    plan = Calibration(rows=100_000)
    run = overhead_model(clock, {})
    fastest_batch_size(run, torch.zeros(1, 2), calibration=plan, long_call=0.02)
    assert max(plan.timings) == 16 and plan.complete  # 8 ms + 16 ms: the first call over 20 ms
