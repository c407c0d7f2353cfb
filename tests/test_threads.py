"""A busy machine: the load check, passive OpenMP waiting, and batch sizes measured in a spike."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from faithmap.core import threads
from faithmap.core.batching import MeasuredSizes
from faithmap.core.threads import Load


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The machine's 1-minute load average, as the test sets it (2 usable cores)."""
    value = [0.0]
    monkeypatch.setattr(os, "getloadavg", lambda: (value[0], value[0], value[0]))
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    yield value


def test_oversubscribed_is_more_load_than_cores_and_quiet_half_a_core_below() -> None:
    assert Load(2.1, 2).oversubscribed and not Load(2.0, 2).oversubscribed
    assert Load(1.5, 2).quiet and not Load(1.6, 2).quiet and not Load(2.1, 2).quiet


def test_the_usable_cores_are_this_process_affinity() -> None:
    found = threads.machine_load()
    assert found is not None and found.cores == len(os.sched_getaffinity(0))


def test_the_fix_is_logged_once_when_busy_and_waits_spin(
    load: list[float], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(threads, "_advised", [])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    load[0] = 1.0
    assert threads.advise_if_busy() is None
    load[0] = 6.0
    with caplog.at_level(logging.WARNING, logger="faithmap.core.threads"):
        assert threads.advise_if_busy() == Load(6.0, 2)
        assert threads.advise_if_busy() is None  # once per process
    assert len(caplog.records) == 1
    assert "OMP_WAIT_POLICY=PASSIVE" in caplog.text and "set_num_threads(1)" in caplog.text


def test_no_advice_when_waits_are_passive_or_single_threaded(
    load: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads, "_advised", [])
    load[0] = 6.0
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert threads.advise_if_busy() is None
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert threads.advise_if_busy() is None


def _policy_after(code: str, environment: dict[str, str]) -> str | None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport os; print(repr(os.environ.get('OMP_WAIT_POLICY')))",
        ],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    value: str | None = eval(done.stdout.strip().splitlines()[-1])  # a repr of str or None
    return value


def test_import_faithmap_sets_passive_waiting_only_before_torch_and_when_unset() -> None:
    bare = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy_after("import faithmap", bare) == "PASSIVE"
    assert _policy_after("import faithmap", {**bare, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
    assert _policy_after("import torch, faithmap", bare) is None  # too late: not pretended


MAPS = """
import sys, torch, faithmap
from faithmap import Model
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin
x = make_shapes(3, seed=0).images
maps = {}
for name in ("cnn", "vit"):
    net = load_builtin(name).eval()
    for method in ("integrated_gradients", "occlusion"):
        maps[f"{name}/{method}"] = faithmap.explain(Model(net), x, method=method).attributions
torch.save(maps, sys.argv[1])
"""


def test_passive_waiting_gives_bit_identical_maps(tmp_path: Path) -> None:
    found = {}
    for policy in ("ACTIVE", "PASSIVE"):
        out = tmp_path / f"{policy}.pt"
        environment = {**os.environ, "OMP_WAIT_POLICY": policy, "FAITHMAP_CACHE_DIR": "off"}
        subprocess.run(
            [sys.executable, "-c", MAPS, str(out)], env=environment, check=True, timeout=600
        )
        found[policy] = torch.load(out)
    assert sorted(found["ACTIVE"]) == sorted(found["PASSIVE"]) and len(found["ACTIVE"]) == 4
    for name, active in found["ACTIVE"].items():
        assert torch.equal(active, found["PASSIVE"][name]), name


def _measure_counter(size: int) -> tuple[list[int], Callable[[tuple[int, ...]], int]]:
    calls: list[int] = []

    def measure(candidates: tuple[int, ...]) -> int:
        calls.append(len(candidates))
        return size

    return calls, measure


def test_a_size_measured_in_a_spike_is_measured_again_once_quiet(
    load: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", str(tmp_path))
    net = torch.nn.Linear(4, 2)
    sample = torch.zeros(1, 4)
    calls, measure = _measure_counter(8)
    load[0] = 5.0
    sizes = MeasuredSizes.of(net)
    assert sizes.size_for(sample, False, 100, measure) == 8
    entry = next(iter(json.loads((tmp_path / "batch_sizes.json").read_text())["entries"].values()))
    assert entry["busy"] is True
    assert sizes.size_for(sample, False, 100, measure) == 8
    assert len(calls) == 1  # still busy: the measurement holds
    load[0] = 1.8  # no longer oversubscribed, not yet quiet
    MeasuredSizes.of(net).size_for(sample, False, 100, measure)
    assert len(calls) == 1
    load[0] = 1.0  # quiet: measured again, and the file's entry no longer says busy
    MeasuredSizes.of(net).size_for(sample, False, 100, measure)
    assert len(calls) == 2
    entry = next(iter(json.loads((tmp_path / "batch_sizes.json").read_text())["entries"].values()))
    assert "busy" not in entry
    MeasuredSizes.of(net).size_for(sample, False, 100, measure)
    assert len(calls) == 2  # a quiet measurement is kept


def test_a_busy_entry_in_the_file_is_used_while_busy_and_replaced_once_quiet(
    load: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAITHMAP_CACHE_DIR", str(tmp_path))
    sample = torch.zeros(1, 4)
    calls, measure = _measure_counter(16)
    load[0] = 5.0
    MeasuredSizes.of(torch.nn.Linear(4, 2)).size_for(sample, False, 100, measure)
    another = torch.nn.Linear(4, 2)  # same architecture: a second process would read the file
    assert MeasuredSizes.of(another).size_for(sample, False, 100, measure) == 16
    assert len(calls) == 1
    load[0] = 0.5
    MeasuredSizes.of(torch.nn.Linear(4, 2)).size_for(sample, False, 100, measure)
    assert len(calls) == 2
    assert threads.is_quiet()
