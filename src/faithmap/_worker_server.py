"""How the benchmark's local worker processes start, and starting them before the driver's imports.

On Linux, workers are forked by multiprocessing's *fork server*, a clean process that imports
what every worker needs once (torch, faithmap's task code, scikit-image's SLIC) and then forks
a worker per request: the workers start with those imports done, instead of each importing them
again as spawned processes do (about 3 s of CPU each on a 2-core machine). Elsewhere (macOS,
Windows) workers are spawned. The fork server holds no torch threads (nothing has run there),
so forking it is safe.

The ``faithmap`` console script (:mod:`faithmap.console`) starts the fork server for ``faithmap
bench`` as its very first step (:func:`start_early`), so its imports run on another core while
the driver imports the rest of faithmap and plans the run. This module imports nothing heavy,
so the console script can call it before anything else.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing.context import BaseContext

WORKER_MODULES = (
    "faithmap.bench.work",
    "faithmap.bench.executors",
    # SLIC's own module: scikit-image loads its subpackages lazily, so importing
    # skimage.segmentation alone leaves the 0.6 s import of SLIC to every worker.
    "skimage.segmentation.slic_superpixels",
)
"""Imported once by the fork server, before it forks workers (one missing is skipped). The
main script (the ``faithmap`` command's) is imported there too, as multiprocessing imports it
in every worker otherwise."""

EARLY_MODULES = (*WORKER_MODULES, "faithmap.bench.report")
"""What a fork server started early (:func:`start_early`) imports: the report's modules too
(matplotlib), for the process that draws two of its figures beside the driver at the end;
that import runs while the driver imports, not on the way to the first tasks."""

NO_WORKER_SUITES = frozenset({"roar", "bam", "generation", "grid"})
"""Suites of ``faithmap bench`` that do not run the local worker processes."""


def worker_context() -> BaseContext:
    """The multiprocessing context of the local workers: the fork server on Linux, else spawn."""
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", *WORKER_MODULES])
        return context
    return multiprocessing.get_context("spawn")


def _option(argv: Sequence[str], name: str) -> str | None:
    for k, arg in enumerate(argv):
        if arg == name and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def likely_workers(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` (``sys.argv``) is a ``faithmap bench`` that will
    probably run local worker processes: a suite that runs tasks, the local executor, no
    ``--workers`` or ``--device`` given, no help asked, and several cores."""
    args = list(argv[1:])
    if not args or args[0] != "bench" or any(a in ("--help", "-h") for a in args):
        return False
    if _option(args, "--suite") in NO_WORKER_SUITES:
        return False
    if any(_option(args, name) is not None for name in ("--executor", "--workers", "--device")):
        return False
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1


def start_early(argv: Sequence[str]) -> bool:
    """Start the workers' fork server now when ``argv`` will probably use it; whether it did.

    Only a head start: the executor starts the server itself when it is not running, and an
    unused server exits with this process.
    """
    if not likely_workers(argv):
        return False
    context = worker_context()
    if context.get_start_method() != "forkserver":
        return False
    context.set_forkserver_preload(["__main__", *EARLY_MODULES])
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return True
