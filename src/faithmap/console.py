"""The ``faithmap`` console script (and ``python -m faithmap``).

For a ``faithmap bench`` command line that will run local worker processes, it first starts
their fork server (:func:`faithmap._worker_server.start_early`), so that the server's imports
(torch, faithmap's task code) run on another core while this process imports the CLI; then it
runs the CLI.
"""

from __future__ import annotations

import sys

from faithmap._worker_server import start_early


def main() -> None:
    """Entry point of the ``faithmap`` console script."""
    start_early(sys.argv)
    from faithmap.cli import main as run_cli

    run_cli()
