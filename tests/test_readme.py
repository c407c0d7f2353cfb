"""The README's interactive examples (``>>>``) run and print what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run() -> None:
    # A fresh interpreter: the examples register a method and a metric, which must not leak
    # into the registries the other tests read.
    script = (
        "import doctest, sys\n"
        f"result = doctest.testfile({str(README)!r}, module_relative=False,\n"
        "    optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)\n"
        "print(result)\n"
        "sys.exit(1 if result.failed or not result.attempted else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "attempted=" in run.stdout
