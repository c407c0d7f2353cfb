"""Imported first by ``faithmap.cli.bench``: for a ``faithmap bench`` command line that will
run local worker processes, start their fork server now, so that its imports (torch, faithmap's
task code) run on another core while this process imports the rest of the CLI
(:func:`faithmap._worker_server.start_early`)."""

from __future__ import annotations

import multiprocessing
import sys

from faithmap._worker_server import start_early

_child = multiprocessing.parent_process() is not None or getattr(
    multiprocessing.current_process(), "_inheriting", False
)  # a worker (or the fork server) importing the main script
STARTED = not _child and start_early(sys.argv)
"""Whether this import started the fork server."""
