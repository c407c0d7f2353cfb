"""Built-in data with ground truth (images, detection scenes, 1-D signals), and image files."""

from faithmap.data.files import ImageFolder, folder_images, read_folder, read_image, read_images
from faithmap.data.grid import GridBatch, cell_masks, make_grid
from faithmap.data.scenes import ShapesScenes, make_shapes_scenes
from faithmap.data.signals import SIGNAL_CLASSES, SignalsBatch, make_signals
from faithmap.data.synthetic import CLASS_NAMES, ShapesBatch, make_shapes

__all__ = [
    "CLASS_NAMES",
    "SIGNAL_CLASSES",
    "GridBatch",
    "ImageFolder",
    "ShapesBatch",
    "ShapesScenes",
    "SignalsBatch",
    "cell_masks",
    "folder_images",
    "make_grid",
    "make_shapes",
    "make_shapes_scenes",
    "make_signals",
    "read_folder",
    "read_image",
    "read_images",
]
