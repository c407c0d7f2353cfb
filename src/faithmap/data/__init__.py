"""Built-in data with ground truth."""

from faithmap.data.synthetic import CLASS_NAMES, ShapesBatch, make_shapes

__all__ = ["CLASS_NAMES", "ShapesBatch", "make_shapes"]
