"""A synthetic image-classification set whose class evidence is known pixel by pixel.

Each image holds one shape (the class) in a random colour, at a random position and scale, on a
textured background. The object's pixels are exactly the ground-truth mask, so localisation
metrics and tests can check whether an explanation points at the object.

The colours never identify the class: object and background colours are drawn independently of
the label. In every channel, each object pixel differs from each background pixel of its image by
at least 0.35 - 0.10 - 0.06 - 2 * 0.04 = 0.11 (colour gap minus the bounded texture and noise),
so the mask is also exactly the set of pixels that look like the object.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import torch
import torch.nn.functional as F

from faithmap.core.validation import check_int

__all__ = ["CLASS_NAMES", "ShapesBatch", "make_shapes"]

CLASS_NAMES: Final[tuple[str, ...]] = ("disc", "square", "triangle", "cross", "ring", "stripes")
"""The class of label ``k`` is ``CLASS_NAMES[k]``."""

# Scale (side of the shape's bounding box) as a fraction of the image size: 14-28 px at 64 px.
_MIN_SCALE: Final = 0.22
_MAX_SCALE: Final = 0.44
# Per-channel distance between object and background base colours lies in [0.35, 0.65].
_MIN_COLOUR_GAP: Final = 0.35
# Background texture amplitudes (per channel, bounded): smoothed noise, colour gradient.
_BLOB_AMPLITUDE: Final = 0.10
_GRADIENT_AMPLITUDE: Final = 0.06
# Independent pixel noise added to object and background alike.
_PIXEL_NOISE: Final = 0.04
# Images drawn per chunk: bounds the temporary memory of large sets.
_CHUNK: Final = 1024

_ShapeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _disc(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + v * v <= 1.0


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.85


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Apex at the top (v = -1), base at the bottom (v = 1); image rows grow downwards.
    return (v <= 1.0) & (u.abs() <= (v + 1.0) / 2.0)


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _stripes(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # Five horizontal bands across the box; bands 0, 2 and 4 are filled.
    band = torch.floor((v + 1.0) * 2.5)
    return (u.abs() <= 1.0) & (v.abs() <= 1.0) & (torch.remainder(band, 2) == 0)


# Each function maps box coordinates (u, v), in [-1, 1] over the shape's bounding box, to inside.
_SHAPES: Final[tuple[_ShapeFn, ...]] = (_disc, _square, _triangle, _cross, _ring, _stripes)


@dataclass(frozen=True)
class ShapesBatch:
    """Images of shapes, their labels, and the masks of the objects.

    Attributes
    ----------
    images : torch.Tensor
        ``(n, 3, size, size)`` float32 in ``[0, 1]``.
    labels : torch.Tensor
        ``(n,)`` int64, indices into `class_names`.
    masks : torch.Tensor
        ``(n, 1, size, size)`` bool, True exactly on the object's pixels.
    class_names : tuple of str
        Name of each label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen).mul_(high - low).add_(low)


def _shape_masks(
    labels: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor, size: int
) -> torch.Tensor:
    """``(m, size, size)`` masks of shapes `labels`, box centres ``(m, 2)`` (x, y) and sides."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    half = scale[:, None, None] / 2
    u = (coords[None, None, :] - centre[:, 0, None, None]) / half
    v = (coords[None, :, None] - centre[:, 1, None, None]) / half
    mask = torch.empty((len(labels), size, size), dtype=torch.bool)
    for k, shape_fn in enumerate(_SHAPES):
        idx = (labels == k).nonzero().squeeze(1)
        mask[idx] = shape_fn(u[idx], v[idx])
    return mask


def _background(
    colour: torch.Tensor,
    angle: torch.Tensor,
    gradient: torch.Tensor,
    size: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """``(m, 3, size, size)`` backgrounds: base colour + smoothed noise + gradient at `angle`."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres
    blob_grid = max(4, size // 8)
    # Bilinear upsampling is separable: one (size, blob_grid) matrix per axis.
    eye = torch.eye(blob_grid)[None]
    upsample = F.interpolate(eye, size=size, mode="linear", align_corners=False)[0].T
    m = len(colour)
    blobs = _uniform((m, 3, blob_grid, blob_grid), -_BLOB_AMPLITUDE, _BLOB_AMPLITUDE, gen)
    background = upsample @ blobs @ upsample.T
    diag = size / 2 * 2**0.5  # largest distance from the centre: keeps the ramp in [-1, 1]
    ramp = (
        (coords[None, None, :] - size / 2) * torch.cos(angle[:, None, None])
        + (coords[None, :, None] - size / 2) * torch.sin(angle[:, None, None])
    ) / diag
    background += gradient[:, :, None, None] * ramp[:, None]
    background += colour[:, :, None, None]
    return background


def make_shapes(n: int, *, seed: int = 0, size: int = 64) -> ShapesBatch:
    """Draw `n` images of coloured shapes on textured backgrounds, with their object masks.

    The classes are :data:`CLASS_NAMES`: disc, square, triangle, cross, ring and stripes. Each
    image holds one shape whose bounding box is a square of side ``0.22 * size`` to
    ``0.44 * size`` (14 to 28 pixels at 64 x 64) placed fully inside the image. The object has a
    uniform random colour plus small pixel noise; the background has another random colour,
    smoothed random noise, a linear colour gradient in a random direction and the same pixel
    noise. Labels are balanced: every class occurs ``n // 6`` or ``n // 6 + 1`` times.

    Parameters
    ----------
    n : int
        Number of images, >= 1.
    seed : int, default=0
        Seed of the private random generator, >= 0. The same seed gives the same images; the
        global random state is neither read nor changed.
    size : int, default=64
        Height and width of the images in pixels, >= 32.

    Returns
    -------
    ShapesBatch
        Images, labels, object masks and class names.

    Raises
    ------
    InvalidParameterError
        If `n`, `seed` or `size` is not an int in its range.

    Examples
    --------
    >>> batch = make_shapes(12, seed=0, size=32)
    >>> batch.images.shape, batch.masks.dtype, len(batch)
    (torch.Size([12, 3, 32, 32]), torch.bool, 12)
    >>> batch.class_names[int(batch.labels[0])] in CLASS_NAMES
    True
    """
    n = check_int(n, "n", "make_shapes", low=1)
    seed = check_int(seed, "seed", "make_shapes", low=0)
    size = check_int(size, "size", "make_shapes", low=32)
    gen = torch.Generator().manual_seed(seed)

    n_classes = len(CLASS_NAMES)
    labels = (torch.arange(n) % n_classes)[torch.randperm(n, generator=gen)]
    # Per-image parameters, all drawn up front.
    scale = _uniform((n,), _MIN_SCALE * size, _MAX_SCALE * size, gen)
    centre = scale[:, None] / 2 + torch.rand((n, 2), generator=gen) * (size - scale[:, None])
    obj_colour = torch.rand((n, 3), generator=gen)
    gap = _uniform((n, 3), _MIN_COLOUR_GAP, 1.0 - _MIN_COLOUR_GAP, gen)
    bg_colour = torch.remainder(obj_colour + gap, 1.0)
    angle = _uniform((n,), 0.0, 2 * torch.pi, gen)
    gradient = _uniform((n, 3), -_GRADIENT_AMPLITUDE, _GRADIENT_AMPLITUDE, gen)

    images = torch.empty((n, 3, size, size))
    masks = torch.empty((n, 1, size, size), dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        mask = _shape_masks(labels[sl], centre[sl], scale[sl], size)
        background = _background(bg_colour[sl], angle[sl], gradient[sl], size, gen)
        chunk = torch.where(mask[:, None], obj_colour[sl, :, None, None], background)
        chunk += _uniform(chunk.shape, -_PIXEL_NOISE, _PIXEL_NOISE, gen)
        images[sl] = chunk.clamp_(0.0, 1.0)
        masks[sl, 0] = mask

    return ShapesBatch(images=images, labels=labels, masks=masks, class_names=CLASS_NAMES)
