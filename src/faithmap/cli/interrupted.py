"""What an interrupted benchmark tells the user: how much is stored, and how to resume."""

from __future__ import annotations

from pathlib import Path

import typer

from faithmap.bench.store import STORE_NAME, Store
from faithmap.cli.common import say


def interrupted(out: Path, config_hash: str, total: int) -> typer.Exit:
    """Say how many of the run's ``total`` tasks the store in ``out`` holds and that the same
    command resumes it; return the exit (code 130, as for Ctrl-C) for the caller to raise."""
    with Store(out) as store:
        runs = [run for run in store.runs() if run.config_hash == config_hash]
        stored = len(store.done(runs[0])) if runs else 0
    say(
        f"interrupted: {stored} of {total} tasks are stored in {out / STORE_NAME}; run the "
        "same command again to resume."
    )
    return typer.Exit(code=130)
