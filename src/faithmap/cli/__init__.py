"""The ``faithmap`` command: list methods and metrics, explain inputs, run the benchmark.

Errors faithmap raises on bad input are printed as one red line, ``error: <message>``, and
the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import re
from importlib import metadata
from typing import Annotated

import typer

from faithmap.cli import bench as _bench  # noqa: F401  (registers bench and report)
from faithmap.cli import explain as _explain  # noqa: F401  (registers explain)
from faithmap.cli.common import app, clean_errors, console, parse_param, plain_text, say
from faithmap.core.metric import MetricSpec
from faithmap.core.registry import METHODS
from faithmap.data.files import read_image
from faithmap.errors import FileProblemError
from faithmap.metrics import METRICS

__all__ = ["app", "main", "parse_param", "read_image"]

DEFAULT_ORDER_DIRECTIONS = {"insertion": True, "deletion": False}
"""Whether higher is better for the metrics whose direction is set by their ``order``
parameter (``higher_is_better`` ``None`` in the registry), at the default ``order='morf'``."""
DIRECTION_IN_SUMMARY = re.compile(r"\s*\(?\b(higher|lower) is better\b\)?\.?", re.IGNORECASE)


def _print_version(value: bool) -> None:
    if not value:
        return
    with clean_errors():
        try:
            version = metadata.version("faithmap")
        except metadata.PackageNotFoundError as err:
            raise FileProblemError(
                "faithmap is not installed as a package, so it has no version. Install it "
                "with `pip install .` in the repository."
            ) from err
        say(f"faithmap {version}")
    raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version, exit."
        ),
    ] = False,
) -> None:
    """Explain what drove a model's prediction, and measure how faithful the explanation is."""


@app.command()
def methods() -> None:
    """List the registered attribution methods."""
    with clean_errors():
        names = METHODS.names()
        width = max(map(len, names))
        for name in names:
            line = f"{name:<{width}}  {plain_text(METHODS.describe(name))}"
            console.print(line, highlight=False, soft_wrap=True)


def direction(name: str, spec: MetricSpec) -> tuple[str, str]:
    """``"higher is better"`` or ``"lower is better"`` for the metric ``name``, and a note
    naming the parameter that decides it (``""`` when none does)."""
    higher = spec.higher_is_better
    if higher is not None:
        return f"{'higher' if higher else 'lower'} is better", ""
    if name in DEFAULT_ORDER_DIRECTIONS:
        higher = DEFAULT_ORDER_DIRECTIONS[name]
        return f"{'higher' if higher else 'lower'} is better", " (order=morf; lerf reverses it)"
    return "set by its parameters", ""


@app.command()
def metrics() -> None:
    """List the registered metrics and whether higher or lower is better (* needs masks)."""
    with clean_errors():
        width = max(map(len, METRICS)) + 2
        for name in sorted(METRICS):
            spec = METRICS[name]
            label = f"{name}{' *' if spec.needs_masks else ''}"
            summary = DIRECTION_IN_SUMMARY.sub("", plain_text(METRICS.describe(name)))
            better, note = direction(name, spec)
            body = summary.rstrip(" .") + note
            line = f"{label:<{width}}  {better:<16}  {body}{'' if body.endswith('?') else '.'}"
            console.print(line, highlight=False, soft_wrap=True)
        say("* needs ground-truth masks (the built-in shapes have them).")


def main() -> None:
    """Entry point of the ``faithmap`` console script."""
    app()
