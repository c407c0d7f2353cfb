"""The import layers: the engine imports nothing above it, methods and metrics not each other.

The same rules are import-linter contracts in ``pyproject.toml`` (``lint-imports`` in CI);
these tests enforce them under plain pytest: once at run time (what ``import faithmap.core``
loads) and once by reading every import statement of the engine, the methods and the metrics,
lazy and ``TYPE_CHECKING`` imports included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import faithmap

PACKAGE = Path(faithmap.__file__).parent

ENGINE_ALLOWED = ("faithmap.core", "faithmap.errors")
"""What ``faithmap.core`` may import from faithmap (itself included)."""

ABOVE_PLUGINS = (
    "faithmap.api",
    "faithmap.evaluation",
    "faithmap.bench",
    "faithmap.cli",
    "faithmap.zoo",
    "faithmap.data",
    "faithmap.viz",
    "faithmap.tabular",
    "faithmap.text",
    "faithmap.testing",
)
"""What neither ``faithmap.methods`` nor ``faithmap.metrics`` may import."""

FORBIDDEN = {
    "core": None,  # everything but ENGINE_ALLOWED
    "methods": ("faithmap.metrics", *ABOVE_PLUGINS),
    "metrics": ("faithmap.methods", *ABOVE_PLUGINS),
}


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def test_importing_the_engine_loads_nothing_else_of_faithmap() -> None:
    code = (
        "import faithmap.core, sys; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] == 'faithmap')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = done.stdout.split()
    assert "faithmap.core" in loaded
    outside = [m for m in loaded if m != "faithmap" and not _within(m, ENGINE_ALLOWED)]
    assert not outside, f"import faithmap.core also imported {outside}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in the file, relative ones resolved.

    ``source`` is the file's text (default: read from ``path``, which places it in the package).

    ``from package import name`` yields ``package.name`` (it may be a submodule), so that
    ``from faithmap import metrics`` counts as importing ``faithmap.metrics``.
    """
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    text = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                prefix = ".".join(base[:keep])
                source = f"{prefix}.{node.module}" if node.module else prefix
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{source}.{alias.name}"


def _files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def violations(layer: str) -> list[str]:
    """The imports of ``faithmap.<layer>`` that break its rule, as ``path:line: module``."""
    found = []
    for path in _files(layer):
        for line, module in imported_modules(path):
            if module.split(".")[0] != "faithmap" or module == "faithmap":
                continue
            forbidden = FORBIDDEN[layer]
            if forbidden is None:
                bad = not _within(module, ENGINE_ALLOWED)
            else:
                bad = _within(module, forbidden)
            if bad:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {module}")
    return sorted(set(found))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_follow_the_rules(layer: str) -> None:
    assert _files(layer), f"no files under faithmap/{layer}"
    assert not violations(layer), f"faithmap.{layer} imports what it must not: " + "\n".join(
        violations(layer)
    )


def test_the_import_reader_sees_relative_lazy_and_package_imports() -> None:
    """The reader itself: a rule it cannot see is no rule."""
    code = (
        "from ..metrics import curves\n"
        "from . import saliency\n"
        "from faithmap import api\n"
        "def f():\n"
        "    import faithmap.bench.run\n"
    )
    as_module = {m for _, m in imported_modules(PACKAGE / "methods" / "probe.py", code)}
    assert {
        "faithmap.metrics",
        "faithmap.metrics.curves",
        "faithmap.methods.saliency",
        "faithmap.api",
        "faithmap.bench.run",
    } <= as_module
    as_package = {m for _, m in imported_modules(PACKAGE / "methods" / "__init__.py", code)}
    # In a package's __init__, "." is the package itself: the same modules.
    assert {"faithmap.methods.saliency", "faithmap.metrics.curves"} <= as_package
