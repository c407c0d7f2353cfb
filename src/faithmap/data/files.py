"""Images from files and folders, as the command line and users' scripts read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faithmap.core.preprocessing import Preprocessing
from faithmap.errors import InvalidParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
"""File endings :func:`read_folder` treats as images."""


def _target_shape(
    size: int | Preprocessing | None, height: int, width: int
) -> tuple[int, int] | None:
    """The ``(height, width)`` an image of that size will be resized to, ``None`` if kept."""
    if isinstance(size, Preprocessing):
        return size.fitted_shape(height, width) if size.size is not None else None
    return None if size is None else (size, size)


def read_image(path: Path, size: int | Preprocessing | None = 64) -> torch.Tensor:
    """An image file as a ``(1, 3, H, W)`` float tensor in [0, 1].

    Alpha is dropped, grey images are repeated over three channels, and with ``size`` the image
    is resized to ``size x size`` with anti-aliasing (64: the built-in models' input); with a
    :class:`~faithmap.core.preprocessing.Preprocessing`, to its size by its resize policy
    (exact ``H x W``, or letterboxed with ``keep_aspect``); ``None`` keeps the file's size. An
    image at least 4 times the target size is first box-averaged by an integer factor while
    still 8-bit (PIL's ``reduce``), so a 8000 x 8000 photo never becomes a full-size float
    array.

    Raises
    ------
    InvalidParameterError
        If the file is missing or is not a readable grey, RGB or RGBA image.
    """
    from PIL import Image
    from skimage.transform import resize

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"The image file {str(path)!r} does not exist.")
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGBA") if opened.mode == "P" else opened
            target = _target_shape(size, image.height, image.width)
            factor = (
                0 if target is None else min(image.height // target[0], image.width // target[1])
            )
            if factor >= 4 and image.mode in ("L", "RGB", "RGBA", "I", "F"):
                image = image.reduce(factor // 2)  # box-average first: no full-size float copy
            pixels = np.asarray(image)
    except Image.DecompressionBombError as err:
        raise InvalidParameterError(
            f"Refusing {str(path)!r}: {str(err).split(',')[0]} (a decompression bomb, or an image "
            "far larger than a model needs). Resize it first."
        ) from err
    except (OSError, ValueError, SyntaxError) as err:
        raise InvalidParameterError(
            f"Could not read {str(path)!r} as an image ({str(err).splitlines()[0]}). Give a PNG "
            "or JPEG file."
        ) from err
    scale = np.iinfo(pixels.dtype).max if np.issubdtype(pixels.dtype, np.integer) else 1
    array = pixels.astype(np.float32) / scale
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidParameterError(
            f"The image {str(path)!r} has shape {array.shape}; expected a grey, RGB or RGBA image."
        )
    array = array[..., :1] if array.shape[2] == 2 else array[..., :3]  # drop alpha
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    if isinstance(size, Preprocessing):
        fitted = size.fitted_shape(array.shape[0], array.shape[1])
        if fitted != array.shape[:2]:
            array = resize(array, fitted, anti_aliasing=True)  # type: ignore[no-untyped-call]
    elif size is not None:
        array = resize(array, (size, size), anti_aliasing=True)  # type: ignore[no-untyped-call]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float()
    tensor = tensor.clamp(0.0, 1.0).unsqueeze(0)
    return size.fit(tensor) if isinstance(size, Preprocessing) else tensor


@dataclass(frozen=True)
class ImageFolder:
    """The readable images of a folder and the files that could not be read.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, size, size)`` in [0, 1], in file-name order.
    paths : list of Path
        The file of each image.
    failures : dict
        Each unreadable file and why.
    """

    images: torch.Tensor
    paths: list[Path]
    failures: dict[Path, str]


def read_folder(folder: Path, size: int | Preprocessing | None = 64) -> ImageFolder:
    """Every image file of ``folder`` (not its sub-folders), skipping and reporting bad ones.

    ``size`` is as for :func:`read_image`; with ``None`` every image must have the same size.

    Raises
    ------
    InvalidParameterError
        If ``folder`` is not a folder, holds no readable image, or (with ``size=None``) holds
        images of different sizes.
    """
    return read_images(folder_images(folder), size, where=f"the folder {str(folder)!r}")


def folder_images(folder: Path) -> list[Path]:
    """The image files of ``folder`` (not its sub-folders), in file-name order.

    Raises
    ------
    InvalidParameterError
        If ``folder`` is not a folder or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidParameterError(f"The folder {str(folder)!r} does not exist.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InvalidParameterError(
            f"The folder {str(folder)!r} holds no image file (looked for "
            f"{', '.join(IMAGE_SUFFIXES)})."
        )
    return files


def read_images(
    files: list[Path],
    size: int | Preprocessing | None = 64,
    *,
    where: str = "the given files",
    require: bool = True,
) -> ImageFolder:
    """The readable ones of ``files`` as one batch, skipping and reporting the others; a chunk
    of a folder at a time keeps memory bounded by the chunk (see :func:`folder_images`).

    Raises
    ------
    InvalidParameterError
        If none is readable (unless ``require=False``: then ``images`` is empty), or (with
        ``size=None``) they have different sizes.
    """
    images, paths, failures = [], [], {}
    for path in map(Path, files):
        try:
            images.append(read_image(path, size))
            paths.append(path)
        except InvalidParameterError as err:
            failures[path] = str(err)
    if not images and not require:
        return ImageFolder(torch.empty(0), [], failures)
    if not images:
        found = f"; unreadable: {', '.join(p.name for p in failures)}" if failures else ""
        raise InvalidParameterError(f"No readable image in {where}{found}.")
    sizes = {tuple(image.shape[-2:]) for image in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise InvalidParameterError(
            f"The images in {where} have different sizes ({listed}); give the model's input "
            "size (--size HxW on the command line) so they are resized to it."
        )
    return ImageFolder(torch.cat(images), paths, failures)
