"""The benchmark: data × models × methods × metrics, resumable, in process or on Ray.

``run_bench(BenchConfig(...))`` plans tasks (model × method × chunk of samples), runs those
not yet in the store (``<out>/bench.sqlite``), and exports the rows as CSV and JSON.
"""

from faithmap.bench.config import BenchConfig, read_toml
from faithmap.bench.defaults import DEFAULT_METHOD_PARAMS, DEFAULT_METHODS
from faithmap.bench.export import Summary, summarize, write_results
from faithmap.bench.plan import Task, plan
from faithmap.bench.run import run_bench
from faithmap.bench.store import Run, Store
from faithmap.bench.work import Row

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_METHOD_PARAMS",
    "BenchConfig",
    "Row",
    "Run",
    "Store",
    "Summary",
    "Task",
    "plan",
    "read_toml",
    "run_bench",
    "summarize",
    "write_results",
]
