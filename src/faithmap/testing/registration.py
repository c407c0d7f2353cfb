"""Every concrete Method subclass in a package is registered."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from faithmap.core.method import Method
from faithmap.core.registry import METHODS


def faithmap_method_classes(package: str = "faithmap") -> list[type[Method]]:
    """Every concrete Method subclass defined in ``package``, each of its modules imported.

    Modules that need an optional package that is not installed (ImportError) are passed
    over, and ``__main__`` modules are never imported.
    """
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue
    found: list[type[Method]] = []
    pending: list[type[Method]] = list(Method.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        in_package = cls.__module__ == package or cls.__module__.startswith(f"{package}.")
        if in_package and not inspect.isabstract(cls) and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def check_registered_methods(package: str = "faithmap") -> None:
    """AssertionError unless every concrete Method subclass defined in ``package`` is registered."""
    registered = set(METHODS.values())
    missing = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in faithmap_method_classes(package)
        if cls not in registered
    ]
    assert not missing, (
        f"concrete Method subclasses not registered: {missing}; decorate each with "
        "@register_method(name), or make it abstract"
    )
