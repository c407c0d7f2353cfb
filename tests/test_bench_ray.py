"""The Ray executor (a local cluster of 2 CPUs) stores the same rows as the local executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray  # noqa: F401  (a test dependency: ray must be installed, never skipped)

from faithmap.bench import BenchConfig, Store, run_bench

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


@pytest.mark.slow
def test_ray_gives_the_rows_of_the_local_executor(tmp_path: Path) -> None:
    local = run_bench(BenchConfig(**TINY, out=tmp_path / "local"), progress=False, report=False)
    config = BenchConfig(**TINY, out=tmp_path / "ray", executor="ray", workers=2)
    remote = run_bench(config, progress=False, report=False)
    assert config.hash == BenchConfig(**TINY).hash  # the executor is not part of the run
    keep = ("model", "method", "metric", "sample", "value", "target", "params")
    passes = ("explain_forward", "explain_backward", "metric_forward", "metric_backward")
    assert [tuple(getattr(r, k) for k in keep + passes) for r in remote] == [
        tuple(getattr(r, k) for k in keep + passes) for r in local
    ]
    with Store(tmp_path / "ray") as store:
        assert len(store.done(store.run())) == 4 and len(store.maps(store.run())) == 2
    again = run_bench(config, progress=False, report=False)  # all stored: Ray gets no task
    assert again == remote
