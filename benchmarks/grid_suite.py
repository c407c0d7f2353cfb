"""Time and findings of ``faithmap bench --suite grid`` at its default size (Rao et al. 2022).

Usage: ``python benchmarks/grid_suite.py [--grids 8] [--out PATH]``.

Runs :func:`faithmap.bench.grid_suite.run_grid` (8 grids of 2 x 2 shapes, the built-in CNN in
the GridPG, DiFull and DiPart settings, 6 methods, ML-Att at three layers) and saves the mean
grid pointing game score per setting, method and layer, the findings, the wall time, the
process CPU time and the load average (default ``benchmarks/results/grid_suite.json``). The
target is under 10 minutes on 2 idle cores; on a shared machine the CPU time divided by the
threads is the better guide to an idle run. The run writes its tasks to a fresh store in a
temporary folder (the suite's store, as ``faithmap bench --suite grid`` does), so every task runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from faithmap.bench.grid_report import summary
from faithmap.bench.grid_suite import GRID_METHODS, run_grid


def main() -> None:
    """Run the suite, print and save its summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/grid_suite.json"))
    options = parser.parse_args()
    load_before = os.getloadavg()
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as store:  # a fresh store: every task runs
        run = run_grid(n_grids=options.grids, out=store, log=lambda line: print(line, flush=True))
    cpu_seconds = time.process_time() - cpu
    rows = summary(run.scores)
    for row in rows:
        name = f"{row['method']}@{row['layer']}"
        print(f"{row['setting']:7} {name:32} {row['mean']:.3f} (min {row['min']:.3f})")
    print("\n".join(run.findings))
    print(f"{run.seconds:.0f} s wall, {cpu_seconds:.0f} s CPU, {torch.get_num_threads()} threads")
    record = {
        "grids": options.grids,
        "maps_per_setting_method_layer": len(run.targets_cells),
        "methods": {name: dict(params) for name, params in GRID_METHODS.items()},
        "wall_seconds": round(run.seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "summary": rows,
        "findings": run.findings,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"saved {options.out}")


if __name__ == "__main__":
    main()
