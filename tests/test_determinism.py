"""Same seed, same result, bit for bit: across processes, calls and measured batch sizes.

The batch size is measured by timing, so two processes may choose different sizes; a row's
floats must not depend on that (:func:`faithmap.core.batching.row_spans`). Each registered
method is run in two fresh processes, one whose measurement is forced to 3 rows and one to 64,
and must give identical attributions; the first process also runs each method twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import faithmap
from faithmap.core.batching import row_spans

TESTS = Path(__file__).parent

RUN_EVERY_METHOD = """
import sys
import torch
import faithmap
from faithmap import Model
from conftest import TinyNet, light_params
from faithmap.testing import tiny_vit

forced = int(sys.argv[2])
if forced:  # what timing chose: a measured size, not one the user gave
    Model._batch_size_for = lambda self, sample, gradients, rows: forced
torch.manual_seed(0)
net = TinyNet().eval()
images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
maps, again = {}, {}
for name in faithmap.METHODS.names():
    params = light_params(name)
    model = Model(tiny_vit() if faithmap.METHODS[name].needs_attention else net)
    maps[name] = faithmap.explain(model, images, method=name, **params).attributions
    if forced == 3:
        again[name] = faithmap.explain(model, images, method=name, **params).attributions
torch.save({"maps": maps, "again": again}, sys.argv[1])
"""


def _run_every_method(folder: Path, forced: int) -> dict[str, dict[str, torch.Tensor]]:
    """Every method's maps from a fresh process (``forced``: its measured size, 0 to measure)."""
    out = folder / f"maps-{forced}.pt"
    environment = {**os.environ, "PYTHONPATH": str(TESTS), "FAITHMAP_CACHE_DIR": "off"}
    environment["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run(
        [sys.executable, "-c", RUN_EVERY_METHOD, str(out), str(forced)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, dict[str, torch.Tensor]] = torch.load(out)
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, dict[str, torch.Tensor]]]:
    """Three processes: measured sizes forced to 3 and to 64 rows, and one that measures."""
    folder = tmp_path_factory.mktemp("determinism")
    return {forced: _run_every_method(folder, forced) for forced in (3, 64, 0)}


def _differing(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> dict[str, float]:
    return {
        name: float((first[name] - second[name]).abs().max())
        for name in first
        if not torch.equal(first[name], second[name])
    }


@pytest.mark.parametrize(
    ("total", "size", "unit", "spans"),
    [
        (100, 16, 8, [(0, 16), (16, 32), (32, 48), (48, 64), (64, 80), (80, 96), (96, 100)]),
        (100, 64, 8, [(0, 64), (64, 96), (96, 100)]),
        (100, 30, 8, [(0, 24), (24, 48), (48, 72), (72, 96), (96, 100)]),
        (13, 3, 8, [(0, 8), (8, 13)]),
        (5, 64, 8, [(0, 5)]),
        (0, 4, 8, []),
        (9, 4, 1, [(0, 4), (4, 8), (8, 9)]),
    ],
)
def test_rows_run_in_whole_units_and_the_leftover_alone(
    total: int, size: int, unit: int, spans: list[tuple[int, int]]
) -> None:
    assert list(row_spans(total, size, unit=unit)) == spans


def test_every_method_is_bit_identical_across_processes_and_measured_sizes(
    runs: dict[int, dict[str, dict[str, torch.Tensor]]],
) -> None:
    names = sorted(faithmap.METHODS.names())
    assert sorted(runs[3]["maps"]) == sorted(runs[64]["maps"]) == names
    assert _differing(runs[3]["maps"], runs[64]["maps"]) == {}
    assert _differing(runs[3]["maps"], runs[0]["maps"]) == {}


def test_a_second_call_in_the_same_process_is_bit_identical(
    runs: dict[int, dict[str, dict[str, torch.Tensor]]],
) -> None:
    assert sorted(runs[3]["again"]) == sorted(faithmap.METHODS.names())
    assert _differing(runs[3]["maps"], runs[3]["again"]) == {}
