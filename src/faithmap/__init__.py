"""faithmap: explain what drove a model's prediction, and measure how faithful it is."""

from faithmap import metrics, tabular
from faithmap.api import explain, get_method
from faithmap.cost import Cost
from faithmap.errors import (
    FaithmapError,
    InvalidParameterError,
    ModelError,
    ShapeError,
    TargetError,
)
from faithmap.evaluate import evaluate
from faithmap.explanation import Explanation
from faithmap.model import Model
from faithmap.regions import Regions, make_regions
from faithmap.registry import available, describe, register
from faithmap.removal import Removal

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "Explanation",
    "FaithmapError",
    "InvalidParameterError",
    "Model",
    "ModelError",
    "Regions",
    "Removal",
    "ShapeError",
    "TargetError",
    "__version__",
    "available",
    "describe",
    "evaluate",
    "explain",
    "get_method",
    "make_regions",
    "metrics",
    "register",
    "tabular",
]
