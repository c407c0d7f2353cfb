"""``faithmap bench --suite bam``: the CLI glue of the BAM suite (:mod:`faithmap.bench.bam_suite`).

:mod:`faithmap.cli.bench` hands the suite's flags here: ``--samples`` (images), ``--methods``,
``--data-seed`` and ``--out`` apply; flags that describe a methods x metrics benchmark
(``--models``, ``--data``, ``--metrics`` ...) do not and are refused. Every step is stored in
``<out>/bench.sqlite``, so the same command resumes an interrupted run.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from faithmap.bench.bam_findings import format_summary, summarize
from faithmap.bench.bam_suite import BamConfig, plan_bam, run_bam, write_bam_results
from faithmap.bench.store import STORE_NAME
from faithmap.cli.common import (
    progress_log,
    refuse_flags,
    say,
    split_names,
    writable_folder,
)
from faithmap.cli.interrupted import interrupted


def bench_bam(
    *,
    methods: str | None,
    samples: int | None,
    data_seed: int | None,
    out: Path | None,
    progress: bool,
    unused: Mapping[str, object],
) -> None:
    """Run (or resume) the BAM suite, print its table and findings, write the summary and the
    report; ``unused`` maps each flag that does not apply to its value (``None`` when not
    given)."""
    refuse_flags(
        unused,
        "bam",
        "it explains its own BAM images "
        "with the shipped object and scene models. Use --samples (images), --methods, "
        "--data-seed and --out.",
    )
    values: dict[str, object] = {
        "methods": split_names(methods, "methods"),
        "n_images": samples,
        "data_seed": data_seed,
        "out": out,
    }
    chosen = BamConfig(**{key: value for key, value in values.items() if value is not None})  # type: ignore[arg-type]
    writable_folder(chosen.out)
    tasks = plan_bam(chosen)

    log = progress_log(progress)

    log(f"{len(tasks)} task(s): the setup, then one per method; finished ones are kept.")
    started = time.perf_counter()
    command = shlex.join(["faithmap", *sys.argv[1:]])
    try:
        rows = run_bam(chosen, log=log, command=command)
    except KeyboardInterrupt:
        raise interrupted(chosen.out, chosen.hash, len(tasks)) from None
    seconds = time.perf_counter() - started
    summary = summarize(rows)
    for line in format_summary(summary):
        say(line)
    say("\nbam suite findings:")
    for line in summary.findings:
        say(f"- {line}")
    written = write_bam_results(chosen, chosen.out, seconds=seconds, command=command)
    say(f"{seconds:.0f} s; wrote {chosen.out / STORE_NAME}, " + ", ".join(map(str, written)))
