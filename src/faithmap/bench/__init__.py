"""The benchmark: methods × models × data × metrics, written as CSV and JSON."""

from faithmap.bench.run import (
    DEFAULT_METHOD_PARAMS,
    BenchConfig,
    Row,
    Summary,
    Task,
    plan,
    run_bench,
    summarize,
    write_results,
)

__all__ = [
    "DEFAULT_METHOD_PARAMS",
    "BenchConfig",
    "Row",
    "Summary",
    "Task",
    "plan",
    "run_bench",
    "summarize",
    "write_results",
]
