"""Devices: checked names, never a silent fall-back to the CPU (:mod:`faithmap.core.devices`).

On a CPU-only machine these tests can show the refusals and the CPU path only; what a GPU does
is left to ``benchmarks/gpu.py`` on a machine that has one.
"""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from faithmap import Model
from faithmap.bench.config import BenchConfig
from faithmap.cli import app
from faithmap.core.devices import available_devices, resolve_device
from faithmap.errors import InvalidParameterError


def test_auto_picks_the_best_available_and_cpu_is_always_there() -> None:
    assert available_devices()[0] == "cpu"
    expected = "cuda" if torch.cuda.is_available() else None
    assert resolve_device("auto").type == (expected or resolve_device("auto").type)
    assert resolve_device("CPU") == torch.device("cpu")


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_an_unavailable_device_is_refused_naming_what_is_available(name: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"not available.*Available: cpu"):
        resolve_device(name)
    with pytest.raises(InvalidParameterError, match="not available"):
        Model(torch.nn.Linear(2, 2), device=name)
    with pytest.raises(InvalidParameterError, match="not available"):
        BenchConfig(models=["cnn"], methods=["saliency"], n_samples=2, device=name)


def test_a_name_that_is_no_device_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="must be one of cpu, cuda, cuda:I, mps, auto"):
        resolve_device("gpu")


def test_a_plain_callable_cannot_be_moved() -> None:
    assert Model(lambda x: x, device="cpu").device is None
    if torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="cannot move it"):
            Model(lambda x: x, device="cuda")


def test_the_device_is_not_part_of_a_runs_identity() -> None:
    base = {"models": ["cnn"], "methods": ["saliency"], "n_samples": 2}
    assert BenchConfig(**base, device="auto").hash == BenchConfig(**base).hash  # type: ignore[arg-type]


def test_the_cli_refuses_an_unknown_device_with_one_error_line() -> None:
    result = CliRunner().invoke(app, ["explain", "--device", "tpu", "--method", "saliency"])
    assert result.exit_code == 2
    assert "error: The --device must be one of" in result.output
