"""Time, scores and findings of ``faithmap bench --suite bam`` at its default size (Yang and Kim).

Usage: ``python benchmarks/bam_suite.py [--images 144] [--out PATH]``.

Runs :func:`faithmap.bench.bam_suite.run_bam` (144 BAM images, the shipped object and scene
models, 6 methods, MCS / IDR / IIR) in a fresh store in a temporary folder, so every task runs,
and saves the per-method means, the setup checks, the findings, the wall time, the process CPU
time, each task's time and the load average (default ``benchmarks/results/bam_suite.json``). The
target is under 10 minutes on 2 idle cores; on a shared machine the CPU time divided by the
threads is the better guide to an idle run.
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

from faithmap.bench.bam_findings import format_summary, summarize
from faithmap.bench.bam_suite import BamConfig, run_bam


def main() -> None:
    """Run the suite, print and save its summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=BamConfig.n_images)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bam_suite.json"))
    options = parser.parse_args()
    load_before = os.getloadavg()
    cpu, wall = time.process_time(), time.perf_counter()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    with tempfile.TemporaryDirectory() as store:
        config = BamConfig(n_images=options.images, out=Path(store))
        rows = run_bam(config, log=log)
    wall_seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    summary = summarize(rows)
    print("\n".join(format_summary(summary)))
    print("\n".join(summary.findings))
    print(f"{wall_seconds:.0f} s wall, {cpu_seconds:.0f} s CPU, {torch.get_num_threads()} threads")
    record = {
        "images": options.images,
        "config": config.identity(),
        "wall_seconds": round(wall_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "task_log": lines,
        "threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "scores": summary.scores,
        "scored": summary.scored,
        "checks": summary.checks,
        "findings": summary.findings,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"saved {options.out}")


if __name__ == "__main__":
    main()
