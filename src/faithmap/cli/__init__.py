"""The ``faithmap`` command: list methods and metrics, explain inputs, run the benchmark.

Errors faithmap raises on bad input are printed as one red line, ``error: <message>``, and
the command exits with status 2, without a traceback.
"""

from __future__ import annotations

from faithmap.cli import bench as _bench  # noqa: F401  (registers bench and report)
from faithmap.cli import explain as _explain  # noqa: F401  (registers explain)
from faithmap.cli.common import app, clean_errors, console, parse_param
from faithmap.core.registry import METHODS
from faithmap.data.files import read_image
from faithmap.metrics import METRICS

__all__ = ["app", "main", "parse_param", "read_image"]


@app.command()
def methods() -> None:
    """List the registered attribution methods."""
    with clean_errors():
        names = METHODS.names()
        width = max(map(len, names))
        for name in names:
            line = f"{name:<{width}}  {METHODS.describe(name)}"
            console.print(line, highlight=False, soft_wrap=True)


@app.command()
def metrics() -> None:
    """List the registered metrics (those marked * need ground-truth masks)."""
    with clean_errors():
        width = max(map(len, METRICS)) + 2
        for name in sorted(METRICS):
            spec = METRICS[name]
            label = f"{name}{' *' if spec.needs_masks else ''}"
            line = f"{label:<{width}}  {METRICS.describe(name)}"
            console.print(line, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point of the ``faithmap`` console script."""
    app()
