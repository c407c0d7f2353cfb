"""Wall time of ``faithmap bench`` with no arguments, from an empty store and batch-size cache.

Usage: ``python benchmarks/default_bench_time.py [--suite default] [--out PATH]``.

Runs ``faithmap bench --out <empty folder>`` (``--suite full`` for the 27 methods) in a fresh
process and records its wall and CPU seconds, the machine's cores and the 1-minute load average
before and after, since on a shared machine the wall time says as much about the other work as
about faithmap: the CPU seconds are the run's own work (the worker processes' included: the
fork server that forked them is stopped and waited for at the end). Printed and saved (default
``benchmarks/results/default_bench_time.json``, one entry per suite, earlier entries kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = """import sys
from multiprocessing import forkserver
from faithmap.console import main
sys.argv[0] = 'faithmap'
try:
    main()
finally:  # wait for the workers' fork server, so that their CPU time is counted
    getattr(getattr(forkserver, "_forkserver", None), "_stop", lambda: None)()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/default_bench_time.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        environment = {**os.environ, "FAITHMAP_CACHE_DIR": str(Path(folder) / "cache")}
        command = ["bench", "--suite", args.suite, "--out", str(Path(folder) / "store")]
        before, used, start = os.getloadavg()[0], os.times(), time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", BENCH, *command, "--no-progress"],
            env=environment,
            check=True,
            capture_output=True,
            text=True,
            timeout=7200,
        )
        wall, after = time.perf_counter() - start, os.times()
    entry = {
        "command": f"faithmap bench --suite {args.suite} --out <empty folder>",
        "wall_s": round(wall, 1),
        "cpu_s": round(
            after.children_user - used.children_user + after.children_system - used.children_system,
            1,
        ),
        "cores": len(os.sched_getaffinity(0)),
        "load_before": round(before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(done.stdout[-4000:])
    print(json.dumps(entry, indent=1))
    record = json.loads(args.out.read_text()) if args.out.is_file() else {}
    record[args.suite] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
