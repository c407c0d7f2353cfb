"""Built-in data with ground truth (images, 1-D signals), and images read from files."""

from faithmap.data.files import ImageFolder, folder_images, read_folder, read_image, read_images
from faithmap.data.signals import SIGNAL_CLASSES, SignalsBatch, make_signals
from faithmap.data.synthetic import CLASS_NAMES, ShapesBatch, make_shapes

__all__ = [
    "CLASS_NAMES",
    "SIGNAL_CLASSES",
    "ImageFolder",
    "ShapesBatch",
    "SignalsBatch",
    "folder_images",
    "make_shapes",
    "make_signals",
    "read_folder",
    "read_image",
    "read_images",
]
