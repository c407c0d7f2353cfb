"""faithmap: explain what drove a model's prediction, and measure how faithful it is.

The names below are loaded on first use, so ``import faithmap.core`` (the engine) imports
nothing else of faithmap; ``faithmap.explain``, ``faithmap.METHODS`` and the rest bring in what
they need, and a registry loads the built-in methods or metrics the first time it is read.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

if "torch" not in sys.modules:  # libgomp reads it once, when torch loads it
    # waiting OpenMP threads sleep instead of spinning: several times faster on a busy machine,
    # the same floats (faithmap.core.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from faithmap import methods, metrics, tabular
    from faithmap.api import explain, get_method
    from faithmap.core.cost import Cost
    from faithmap.core.detection import (
        BoxTarget,
        HuggingFaceAdapter,
        SegmentationTarget,
        TorchvisionAdapter,
        YoloAdapter,
        box_targets,
        pick_boxes,
    )
    from faithmap.core.explanation import Explanation
    from faithmap.core.model import Model
    from faithmap.core.preprocessing import Preprocessing
    from faithmap.core.regions import Regions, make_regions
    from faithmap.core.registry import METHODS, METRICS, register_method, register_metric
    from faithmap.core.removal import Removal
    from faithmap.errors import (
        ConstantMapWarning,
        FaithmapError,
        FileProblemError,
        InvalidParameterError,
        MissingDependencyError,
        ModelError,
        ResourceError,
        ShapeError,
        TargetError,
        UnknownNameError,
    )
    from faithmap.evaluation import evaluate

__version__ = "0.1.0"

_HOMES = {
    "BoxTarget": "faithmap.core.detection",
    "ConstantMapWarning": "faithmap.errors",
    "Cost": "faithmap.core.cost",
    "Explanation": "faithmap.core.explanation",
    "FaithmapError": "faithmap.errors",
    "FileProblemError": "faithmap.errors",
    "HuggingFaceAdapter": "faithmap.core.detection",
    "InvalidParameterError": "faithmap.errors",
    "METHODS": "faithmap.core.registry",
    "METRICS": "faithmap.core.registry",
    "MissingDependencyError": "faithmap.errors",
    "Model": "faithmap.core.model",
    "ModelError": "faithmap.errors",
    "Preprocessing": "faithmap.core.preprocessing",
    "ResourceError": "faithmap.errors",
    "Regions": "faithmap.core.regions",
    "Removal": "faithmap.core.removal",
    "SegmentationTarget": "faithmap.core.detection",
    "ShapeError": "faithmap.errors",
    "TargetError": "faithmap.errors",
    "TorchvisionAdapter": "faithmap.core.detection",
    "UnknownNameError": "faithmap.errors",
    "YoloAdapter": "faithmap.core.detection",
    "box_targets": "faithmap.core.detection",
    "evaluate": "faithmap.evaluation",
    "explain": "faithmap.api",
    "get_method": "faithmap.api",
    "make_regions": "faithmap.core.regions",
    "pick_boxes": "faithmap.core.detection",
    "register_method": "faithmap.core.registry",
    "register_metric": "faithmap.core.registry",
}
_SUBPACKAGES = ("methods", "metrics", "tabular")

__all__ = [
    "METHODS",
    "METRICS",
    "BoxTarget",
    "ConstantMapWarning",
    "Cost",
    "Explanation",
    "FaithmapError",
    "FileProblemError",
    "HuggingFaceAdapter",
    "InvalidParameterError",
    "MissingDependencyError",
    "Model",
    "ModelError",
    "Preprocessing",
    "Regions",
    "Removal",
    "ResourceError",
    "SegmentationTarget",
    "ShapeError",
    "TargetError",
    "TorchvisionAdapter",
    "UnknownNameError",
    "YoloAdapter",
    "__version__",
    "box_targets",
    "evaluate",
    "explain",
    "get_method",
    "make_regions",
    "methods",
    "metrics",
    "pick_boxes",
    "register_method",
    "register_metric",
    "tabular",
]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        value: Any = importlib.import_module(f"faithmap.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'faithmap' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
