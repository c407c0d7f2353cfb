"""Run the ROAR suite (``faithmap bench --suite roar``'s protocol) and save its tables and time.

Saves ``benchmarks/results/roar_suite.json``: the configuration, the retrained accuracies,
the side-by-side ROAR/KAR/insertion/deletion/ROAD table, the rank correlations, the findings,
the wall time and this process's CPU time, the torch thread count and the machine's load
average before and after (the time means little on a busy machine; the CPU time less so).

    python benchmarks/roar_suite.py                       # the suite's default size
    python benchmarks/roar_suite.py --seeds 0 --methods saliency,grad_cam --out /tmp/roar
    python benchmarks/roar_suite.py --fill mean --results /tmp/roar_mean.json  # Hooker's fill

The run is resumable: the same command continues an interrupted run from its store.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from faithmap.bench.roar import RoarConfig, run_roar
from faithmap.bench.roar_suite import format_summary, summarize, write_summary

RESULTS = Path(__file__).parent / "results" / "roar_suite.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=None, help="comma-separated labels or names")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds")
    parser.add_argument("--fractions", default=None, help="comma-separated fractions")
    parser.add_argument("--fill", default=None, help="noisy_linear (default) or mean")
    parser.add_argument("--out", type=Path, default=Path("faithmap-bench"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    options = parser.parse_args()
    values: dict[str, object] = {"out": options.out}
    if options.methods:
        values["methods"] = options.methods.split(",")
    if options.seeds:
        values["seeds"] = tuple(int(s) for s in options.seeds.split(","))
    if options.fractions:
        values["fractions"] = tuple(float(t) for t in options.fractions.split(","))
    if options.fill:
        values["fill"] = options.fill
    config = RoarConfig(**values)  # type: ignore[arg-type]
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = run_roar(config, log=lambda line: print(line, flush=True))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    summary = summarize(rows, config)
    print("\n".join(format_summary(summary, config)))
    print("\n".join(f"- {line}" for line in summary.findings))
    print(f"{wall:.0f} s wall, {cpu:.0f} s CPU, load {load_before} -> {os.getloadavg()}")
    write_summary(
        summary,
        config,
        options.results,
        seconds=wall,
        cpu_seconds=cpu,
        threads=torch.get_num_threads(),
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        cores=os.cpu_count(),
    )


if __name__ == "__main__":
    main()
