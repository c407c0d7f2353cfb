"""Built-in data with ground truth, and images read from files."""

from faithmap.data.files import ImageFolder, read_folder, read_image
from faithmap.data.synthetic import CLASS_NAMES, ShapesBatch, make_shapes

__all__ = ["CLASS_NAMES", "ImageFolder", "ShapesBatch", "make_shapes", "read_folder", "read_image"]
