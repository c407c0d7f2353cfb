"""What a model expects of its input, declared once: size, channel order and normalisation.

faithmap keeps every input in *the user's pixel space*: RGB (or the data's own channels) with
values in [0, 1]. A :class:`Preprocessing` turns that into what the network was trained on,
and :class:`~faithmap.core.model.Model` applies it *inside* every model call, so attributions,
removals and metrics all stay in the user's pixel space (a blur or a black fill means the same
thing whatever the network's normalisation), while the network still sees what it expects.

The resize policy is shared by the loaders (which bring files to the model's size before
batching) and the model call (which resizes a batch of another size the same way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError

ChannelOrder = Literal["rgb", "bgr"]
ChannelValues = tuple[float, ...] | Sequence[float] | float | str | None
"""A ``mean`` or ``std`` as given: one number, one per channel, a comma-separated string, or
(for ``mean``) a name from :data:`NORMALISATIONS`; stored as a tuple (or ``None``)."""

NORMALISATIONS: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)),
}
"""Named ``(mean, std)`` pairs on [0, 1] inputs: ``imagenet`` (torchvision, timm), ``half``
(``(x - 0.5) / 0.5``, i.e. [-1, 1], common in OCR and GAN-era models), ``clip`` (OpenAI CLIP)."""


def parse_size(value: object, owner: str = "Preprocessing") -> tuple[int, int]:
    """``(height, width)`` from an int ``S`` (square), a pair, or a string ``"H"``/``"HxW"``."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            numbers = [int(part) for part in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2):
            raise InvalidParameterError(
                f"The 'size' of {owner} must be 'S' or 'HxW' with whole numbers, e.g. 224 or "
                f"48x192. Got {value!r} instead."
            )
        value = tuple(numbers)
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) not in (1, 2)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise InvalidParameterError(
            f"The 'size' of {owner} must be an int or a (height, width) pair of ints. Got "
            f"{value!r} instead."
        )
    height, width = (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    if height < 1 or width < 1:
        raise InvalidParameterError(
            f"The 'size' of {owner} must be at least 1x1 pixels. Got {height}x{width} instead."
        )
    return int(height), int(width)


def _per_channel(value: object, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (float(value),)
    if isinstance(value, str):
        value = value.split(",")
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as err:
        raise InvalidParameterError(
            f"The '{name}' of Preprocessing must be a number or one number per channel, e.g. "
            f"0.5 or (0.485, 0.456, 0.406). Got {value!r} instead."
        ) from err
    if not numbers:
        raise InvalidParameterError(f"The '{name}' of Preprocessing must not be empty.")
    return numbers


@dataclass(frozen=True)
class Preprocessing:
    """How inputs in the user's pixel space become what the network expects.

    Applied in this order inside each model call: resize to ``size`` (if the batch has another
    size), reorder ``channels``, multiply by ``scale``, subtract ``mean`` and divide by ``std``.

    Parameters
    ----------
    size : (int, int) or None, default=None
        The network's input ``(height, width)``; ``None`` keeps the inputs' size.
    keep_aspect : bool, default=False
        Resize to fit inside ``size`` keeping the aspect ratio, and pad the rest with
        ``pad_value`` (letterboxing, as detectors and OCR models expect); otherwise stretch.
    pad_value : float, default=0.0
        The padding value, in the user's pixel space.
    channels : {"rgb", "bgr"}, default="rgb"
        The channel order the network expects; inputs are RGB, so ``"bgr"`` flips them
        (OpenCV-trained models).
    scale : float, default=1.0
        Multiplies the [0, 1] inputs first: 255 for a network that expects 0..255 values.
    mean, std : sequence of float, str or None
        Per-channel (or one shared) normalisation after ``scale``; a name from
        :data:`NORMALISATIONS` (``"imagenet"``) gives both at once as ``mean``.

    Examples
    --------
    >>> prep = Preprocessing(size=(48, 192), channels="bgr", mean=0.5, std=0.5)
    >>> prep(torch.ones(1, 3, 48, 192)).max().item()
    1.0
    """

    size: tuple[int, int] | None = None
    keep_aspect: bool = False
    pad_value: float = 0.0
    channels: ChannelOrder = "rgb"
    scale: float = 1.0
    mean: ChannelValues = None
    std: ChannelValues = None

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", parse_size(self.size))
        if self.channels not in ("rgb", "bgr"):
            raise InvalidParameterError(
                "The 'channels' of Preprocessing must be 'rgb' or 'bgr'. Got "
                f"{self.channels!r} instead."
            )
        mean: object = self.mean
        std: object = self.std
        if isinstance(mean, str) and mean in NORMALISATIONS:
            if std is not None:
                raise InvalidParameterError(
                    f"Preprocessing mean={mean!r} names a normalisation that sets std too; "
                    "leave std out."
                )
            mean, std = NORMALISATIONS[mean]
        elif isinstance(mean, str) and not any(c.isdigit() for c in mean):
            raise InvalidParameterError(
                f"Unknown normalisation {mean!r}. Valid names are: {', '.join(NORMALISATIONS)}; "
                "or give numbers, e.g. mean=(0.5, 0.5, 0.5)."
            )
        mean, std = _per_channel(mean, "mean"), _per_channel(std, "std")
        if std is not None and any(s <= 0 for s in std):
            raise InvalidParameterError(f"The 'std' of Preprocessing must be > 0. Got {std}.")
        if not (isinstance(self.scale, int | float) and self.scale > 0):
            raise InvalidParameterError(
                f"The 'scale' of Preprocessing must be a number > 0. Got {self.scale!r} instead."
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "pad_value", float(self.pad_value))

    @property
    def means(self) -> tuple[float, ...] | None:
        """``mean`` as stored: one value per channel (or one shared), or ``None``."""
        return self.mean  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def stds(self) -> tuple[float, ...] | None:
        """``std`` as stored: one value per channel (or one shared), or ``None``."""
        return self.std  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def is_identity(self) -> bool:
        """Whether the model call changes nothing (no resize counted: it depends on the batch)."""
        return (
            self.channels == "rgb" and self.scale == 1.0 and self.mean is None and self.std is None
        )

    def record(self) -> dict[str, Any]:
        """The JSON-friendly record stored in explanations and the benchmark's config hash."""
        return {
            "size": list(self.size) if self.size else None,
            "keep_aspect": self.keep_aspect,
            "pad_value": self.pad_value,
            "channels": self.channels,
            "scale": self.scale,
            "mean": list(self.means) if self.means else None,
            "std": list(self.stds) if self.stds else None,
        }

    def fitted_shape(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height x width`` is resized to before any padding."""
        if self.size is None:
            return height, width
        if not self.keep_aspect:
            return self.size
        ratio = min(self.size[0] / height, self.size[1] / width)
        return max(1, round(height * ratio)), max(1, round(width * ratio))

    def fit(self, images: Tensor) -> Tensor:
        """``images`` ``(N, C, H, W)`` brought to ``size`` by the resize policy (no other step).

        Bilinear interpolation, differentiable; with ``keep_aspect`` the image is scaled to fit
        and centred on a ``pad_value`` canvas.
        """
        if self.size is None or tuple(images.shape[-2:]) == self.size:
            return images
        if images.dim() != 4:
            raise ShapeError(
                f"Preprocessing resizes images (N, C, H, W). Got {tuple(images.shape)} instead; "
                "leave 'size' unset for inputs that are not images."
            )
        height, width = self.size
        inner = self.fitted_shape(images.shape[-2], images.shape[-1])
        resized = images
        if inner != tuple(images.shape[-2:]):
            shrinking = inner[0] < images.shape[-2] or inner[1] < images.shape[-1]
            resized = F.interpolate(
                images, size=inner, mode="bilinear", align_corners=False, antialias=shrinking
            )
        if inner == (height, width):
            return resized
        top, left = (height - inner[0]) // 2, (width - inner[1]) // 2
        return F.pad(
            resized,
            (left, width - inner[1] - left, top, height - inner[0] - top),
            value=self.pad_value,
        )

    def __call__(self, batch: Tensor) -> Tensor:
        """The network's input for a batch in the user's pixel space."""
        if self.is_identity and self.size is None:
            return batch
        if not batch.is_floating_point():
            batch = batch.float()
        batch = self.fit(batch)
        if batch.dim() < 2:
            return batch
        channels = batch.shape[1]
        if self.channels == "bgr":
            if batch.dim() != 4 or channels != 3:
                raise ShapeError(
                    f"channels='bgr' reorders 3-channel images (N, 3, H, W); the inputs have "
                    f"shape {tuple(batch.shape)}. Leave channels='rgb'."
                )
            batch = batch.flip(1)
        if self.scale != 1.0:
            batch = batch * self.scale
        if self.means is not None:
            batch = batch - self._channel_values(self.means, batch, "mean")
        if self.stds is not None:
            batch = batch / self._channel_values(self.stds, batch, "std")
        return batch

    def _channel_values(self, values: tuple[float, ...], batch: Tensor, name: str) -> Tensor:
        channels = batch.shape[1]
        if len(values) not in (1, channels):
            raise ShapeError(
                f"Preprocessing has {len(values)} '{name}' values, but the inputs have "
                f"{channels} channels (shape {tuple(batch.shape)}). Give one value, or one per "
                "channel."
            )
        shape = (1, -1) + (1,) * (batch.dim() - 2)
        return torch.tensor(values, dtype=batch.dtype, device=batch.device).view(shape)


def as_preprocessing(value: Preprocessing | Mapping[str, Any] | None) -> Preprocessing:
    """A :class:`Preprocessing` from itself, a mapping of its fields, or ``None`` (nothing)."""
    if value is None:
        return Preprocessing()
    if isinstance(value, Preprocessing):
        return value
    if isinstance(value, Mapping):
        fields = set(Preprocessing.__dataclass_fields__)
        unknown = sorted(set(value) - fields)
        if unknown:
            raise InvalidParameterError(
                f"Unknown preprocessing field(s) {unknown}. Valid fields are: "
                f"{', '.join(sorted(fields))}."
            )
        return Preprocessing(**value)
    raise InvalidParameterError(
        "preprocessing must be a faithmap.Preprocessing, a mapping of its fields or None. Got "
        f"{type(value).__name__} instead."
    )
