"""Objects pasted on scenes with known relative importance: BAM-style data.

Every image is a textured scene (one of :data:`SCENE_NAMES`) with one shape of
:data:`~faithmap.data.CLASS_NAMES` pasted on it, and carries two labels: the object's class and
the scene's class. Every (object, scene) pair occurs equally often (as in BAM, which pastes every
object class on every scene class), so to a model trained on the scene label the object is a
*common feature* that predicts nothing, and to a model trained on the object label the scene
predicts nothing. The same scene without the object (``scene_only``) comes with each image, so
the object's effect on an attribution can be measured on identical scene pixels.

As in the BAM data set, the object's bounding square has a side of ``1/sqrt(3)`` to
``1/sqrt(2)`` of the image and sits at a uniform position inside it. Scene and object colours are
random and independent of both labels; every object colour differs from its scene's base colour
by 0.35 to 0.65 in each channel, more than the texture, gradient and noise can bridge, so the mask
is exactly the set of pixels that look like the object.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", arXiv
1907.09701, 2019 (the BAM data set: COCO objects pasted on MiniPlaces scenes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import torch

from faithmap.core.validation import check_int
from faithmap.data.synthetic import (
    _GRADIENT_AMPLITUDE,
    _MIN_COLOUR_GAP,
    _PIXEL_NOISE,
    CLASS_NAMES,
    _shape_masks,
    _uniform,
)

__all__ = ["SCENE_NAMES", "BamBatch", "make_bam"]

SCENE_NAMES: Final[tuple[str, ...]] = (
    "blobs",
    "horizontal_waves",
    "vertical_waves",
    "diagonal_waves",
    "checks",
    "dots",
)
"""The scene (background texture) of scene label ``k`` is ``SCENE_NAMES[k]``."""

# Side of the object's bounding square as a fraction of the image side (BAM's range).
_MIN_SCALE: Final = 1 / math.sqrt(3)
_MAX_SCALE: Final = 1 / math.sqrt(2)
# Texture period as a fraction of the image side: 5 to 10 pixels at 64 x 64.
_MIN_PERIOD: Final = 5 / 64
_MAX_PERIOD: Final = 10 / 64
# Per-channel amplitude of the texture, which lies in [-1, 1] before scaling.
_MIN_TEXTURE: Final = 0.08
_MAX_TEXTURE: Final = 0.12


@dataclass(frozen=True)
class BamBatch:
    """Scenes with a pasted object, the same scenes without it, both labels and the masks.

    Attributes
    ----------
    images : torch.Tensor
        ``(n, 3, size, size)`` float32 in ``[0, 1]``: scene with the object pasted.
    scene_only : torch.Tensor
        ``(n, 3, size, size)``: the same scene pixels without the object.
    object_labels : torch.Tensor
        ``(n,)`` int64, indices into `object_names`.
    scene_labels : torch.Tensor
        ``(n,)`` int64, indices into `scene_names`.
    masks : torch.Tensor
        ``(n, 1, size, size)`` bool, True exactly on the object's pixels.
    object_names, scene_names : tuple of str
        Name of each label.
    """

    images: torch.Tensor
    scene_only: torch.Tensor
    object_labels: torch.Tensor
    scene_labels: torch.Tensor
    masks: torch.Tensor
    object_names: tuple[str, ...]
    scene_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.object_labels.shape[0])


def _smooth_noise(m: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``(m, size, size)`` bilinearly upsampled uniform noise on an 8 x 8 grid, in [-1, 1]."""
    grid = 8
    eye = torch.eye(grid)[None]
    upsample = torch.nn.functional.interpolate(eye, size=size, mode="linear")[0].T
    return upsample @ _uniform((m, grid, grid), -1.0, 1.0, gen) @ upsample.T


def _textures(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """``(m, size, size)`` textures in ``[-1, 1]`` of scene classes `labels`."""
    m = len(labels)
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    x, y = coords[None, None, :], coords[None, :, None]
    period = _uniform((m, 1, 1), _MIN_PERIOD * size, _MAX_PERIOD * size, gen)
    phase = _uniform((m, 2, 1, 1), 0.0, 2 * math.pi, gen)
    wx = 2 * math.pi * x / period + phase[:, 0]
    wy = 2 * math.pi * y / period + phase[:, 1]
    noise = _smooth_noise(m, size, gen)
    kinds = [
        noise / noise.flatten(1).abs().amax(1).clamp(min=1e-6)[:, None, None],
        torch.sin(wy).expand(m, size, size),
        torch.sin(wx).expand(m, size, size),
        torch.sin((wx + wy) / math.sqrt(2)),
        torch.sign(torch.sin(wx) * torch.sin(wy)),
        torch.where(torch.cos(wx) * torch.cos(wy) > 0.5, 1.0, -1.0),
    ]
    out = torch.empty((m, size, size))
    for k, texture in enumerate(kinds):
        chosen = labels == k
        out[chosen] = texture[chosen]
    return out


def make_bam(n: int, *, seed: int = 0, size: int = 64) -> BamBatch:
    """Draw `n` scenes of :data:`SCENE_NAMES` with one shape of ``CLASS_NAMES`` pasted on each.

    A scene is a random base colour, a texture of its class (smoothed noise, horizontal,
    vertical or diagonal waves, checks or dots; period 5 to 10 pixels at 64 x 64, random phase,
    per-channel amplitude 0.08 to 0.12), the linear colour gradient of
    :func:`~faithmap.data.make_shapes` and pixel noise. The object is a shape of uniform random
    colour plus the same pixel noise. Each of the 36 (object, scene) pairs occurs
    ``n // 36`` or ``n // 36 + 1`` times and each label is balanced (``n // 6`` or
    ``n // 6 + 1`` per class), so neither label tells anything about the other.

    Parameters
    ----------
    n : int
        Number of images, >= 1.
    seed : int, default=0
        Seed of the private random generator, >= 0; the global random state is untouched.
    size : int, default=64
        Height and width in pixels, >= 32.

    Returns
    -------
    BamBatch
        Images with the object, the same scenes without it, both labels and the object masks.

    Raises
    ------
    InvalidParameterError
        If `n`, `seed` or `size` is not an int in its range.

    References
    ----------
    Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019.

    Examples
    --------
    >>> batch = make_bam(12, seed=0, size=32)
    >>> batch.images.shape == batch.scene_only.shape == (12, 3, 32, 32)
    True
    >>> bool((batch.images == batch.scene_only)[~batch.masks.expand(-1, 3, -1, -1)].all())
    True
    """
    n = check_int(n, "n", "make_bam", low=1)
    seed = check_int(seed, "seed", "make_bam", low=0)
    size = check_int(size, "size", "make_bam", low=32)
    gen = torch.Generator().manual_seed(seed)

    # Pair k of 36 is (object k % 6, scene (k % 6 + k // 6) % 6): every pair once in 36, and any
    # prefix of the cycle balanced in both labels (a Latin square read row by row).
    classes = len(CLASS_NAMES)  # == len(SCENE_NAMES)
    pair = (torch.arange(n) % classes**2)[torch.randperm(n, generator=gen)]
    object_labels = pair % classes
    scene_labels = (pair % classes + pair // classes) % classes
    scale = _uniform((n,), _MIN_SCALE * size, _MAX_SCALE * size, gen)
    centre = scale[:, None] / 2 + torch.rand((n, 2), generator=gen) * (size - scale[:, None])
    bg_colour = torch.rand((n, 3), generator=gen)
    gap = _uniform((n, 3), _MIN_COLOUR_GAP, 1.0 - _MIN_COLOUR_GAP, gen)
    obj_colour = torch.remainder(bg_colour + gap, 1.0)
    amplitude = _uniform((n, 3), _MIN_TEXTURE, _MAX_TEXTURE, gen)
    angle = _uniform((n,), 0.0, 2 * math.pi, gen)
    gradient = _uniform((n, 3), -_GRADIENT_AMPLITUDE, _GRADIENT_AMPLITUDE, gen)

    coords = torch.arange(size, dtype=torch.float32) + 0.5 - size / 2
    ramp = (
        coords[None, None, :] * torch.cos(angle[:, None, None])
        + coords[None, :, None] * torch.sin(angle[:, None, None])
    ) / (size / 2 * math.sqrt(2))
    scenes = (
        bg_colour[:, :, None, None]
        + amplitude[:, :, None, None] * _textures(scene_labels, size, gen)[:, None]
        + gradient[:, :, None, None] * ramp[:, None]
    )
    scenes += _uniform(scenes.shape, -_PIXEL_NOISE, _PIXEL_NOISE, gen)
    scenes.clamp_(0.0, 1.0)
    masks = _shape_masks(object_labels, centre, scale, size)[:, None]
    painted = obj_colour[:, :, None, None] + _uniform(
        scenes.shape, -_PIXEL_NOISE, _PIXEL_NOISE, gen
    )
    images = torch.where(masks, painted.clamp_(0.0, 1.0), scenes)
    return BamBatch(
        images=images,
        scene_only=scenes,
        object_labels=object_labels,
        scene_labels=scene_labels,
        masks=masks,
        object_names=CLASS_NAMES,
        scene_names=SCENE_NAMES,
    )
