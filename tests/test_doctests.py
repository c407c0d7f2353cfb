"""The examples in faithmap's docstrings run and print what they say (on the installed package)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import faithmap

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(faithmap.__path__, prefix="faithmap.")
    if not info.name.endswith("__main__")
)


def test_modules_are_found() -> None:
    assert {"faithmap.core.model", "faithmap.metrics.curves", "faithmap.api"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
