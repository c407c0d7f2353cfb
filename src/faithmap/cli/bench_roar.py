"""``faithmap bench --suite roar``: the CLI glue of ROAR and KAR (:mod:`faithmap.bench.roar`).

:mod:`faithmap.cli.bench` hands the suite's flags here. A ``--config`` TOML file holds
:class:`~faithmap.bench.roar.RoarConfig` keys (``fractions``, ``seeds``, ``modes``, ``fill``,
``n_train``, ``epochs`` ...); flags that describe a methods x metrics benchmark (``--models``,
``--data``, ``--metrics`` ...) do not apply and are refused.
"""

from __future__ import annotations

import shlex
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from faithmap.bench.roar import RoarConfig, plan_roar, run_roar
from faithmap.bench.roar_suite import format_summary, summarize, write_summary
from faithmap.bench.store import STORE_NAME
from faithmap.cli.common import (
    errors,
    progress_log,
    refuse_flags,
    say,
    split_names,
    writable_folder,
)
from faithmap.cli.interrupted import interrupted
from faithmap.errors import FileProblemError, InvalidParameterError

SUMMARY_NAME = "roar.json"
"""The summary's file name in the output folder."""


def _read_config(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text())
    except OSError as err:
        raise FileProblemError(f"Cannot read the ROAR configuration {str(path)!r}: {err}.") from err
    except tomllib.TOMLDecodeError as err:
        raise InvalidParameterError(f"{str(path)!r} is not valid TOML: {err}.") from err
    valid = [f.name for f in fields(RoarConfig)]
    if unknown := sorted(set(values) - set(valid)):
        raise InvalidParameterError(
            f"Unknown ROAR configuration keys {', '.join(map(repr, unknown))} in {str(path)!r}. "
            f"Valid keys are: {', '.join(valid)}."
        )
    return values


def bench_roar(
    *,
    config: Path | None,
    methods: str | None,
    samples: int | None,
    data_seed: int | None,
    out: Path | None,
    progress: bool,
    unused: Mapping[str, object],
) -> None:
    """Run (or resume) the ROAR suite, print its tables and findings, save ``roar.json``;
    ``unused`` maps each flag that does not apply to its value (``None`` when not given)."""
    refuse_flags(
        unused,
        "roar",
        "it retrains the built-in CNN "
        "on modified shapes. Drop them (--config takes RoarConfig keys), or pick another "
        "--suite.",
    )
    values = _read_config(config) if config is not None else {}
    flags = {
        "methods": split_names(methods, "methods"),
        "n_eval": samples,
        "data_seed": data_seed,
        "out": out,
    }
    values |= {key: value for key, value in flags.items() if value is not None}
    chosen = RoarConfig(**values)
    writable_folder(chosen.out)
    tasks = plan_roar(chosen)
    if progress:
        errors.print(
            f"{len(tasks)} task(s): each a retraining (mode, method, fraction, seed) or one "
            "method's insertion/deletion/ROAD scoring; finished ones are kept in the store.",
            highlight=False,
            soft_wrap=True,
        )

    log = progress_log(progress)

    started = time.perf_counter()
    command = shlex.join(["faithmap", *sys.argv[1:]])
    try:
        rows = run_roar(chosen, log=log, command=command)
    except KeyboardInterrupt:
        raise interrupted(chosen.out, chosen.hash, len(tasks)) from None
    seconds = time.perf_counter() - started
    summary = summarize(rows, chosen)
    for line in format_summary(summary, chosen):
        say(line)
    say("\nroar suite findings:")
    for line in summary.findings:
        say(f"- {line}")
    write_summary(summary, chosen, chosen.out / SUMMARY_NAME, seconds=seconds)
    say(f"wrote {chosen.out / STORE_NAME}, {chosen.out / SUMMARY_NAME} ({seconds:.0f} s)")
