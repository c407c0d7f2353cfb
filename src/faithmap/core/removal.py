"""How removed features are filled, and the one routine that scores inputs with features removed.

A keep-mask is 1 where the input is kept and 0 where it is removed (values in between blend).
Every perturbation method and every removal metric builds its perturbed inputs here, one batch
at a time on the model's device: ``substrate + keep * (inputs - substrate)``.

References
----------
Covert, Lundberg, Lee, "Explaining by Removing: A Unified Framework for Model Explanation",
JMLR 22, 2021.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from faithmap.core.constraints import CALLABLE, ConstraintList, InstanceOf, Interval, options
from faithmap.core.model import Model
from faithmap.core.readout import Activation
from faithmap.core.targets import Target
from faithmap.core.validation import check_float, check_int
from faithmap.errors import InvalidParameterError, ShapeError

Fill = Literal["constant", "mean", "blur", "noise"]
"""The named removal fills."""
FILLS = get_args(Fill)
FillLike = str | float | int | Callable[[Tensor], Tensor]
"""What a removed feature becomes: a named fill, a constant, or a function of the inputs."""
FillSpec = Fill | float | Callable[[Tensor], Tensor]
"""A method's ``fill`` parameter, typed: a named fill, a constant, or a function of the inputs."""
FILL: ConstraintList = [options(FILLS), Interval(float), CALLABLE]
"""The constraint of a ``fill`` parameter: a named fill, a finite number or a callable."""
MaskRows = Callable[[Tensor, Tensor], Tensor]
"""Keep-masks for pairs ``(sample index, perturbation index)``: ``(B, 1 or C, H, W)``."""


@dataclass(frozen=True, kw_only=True)
class Removal:
    """What a removed feature becomes.

    Parameters
    ----------
    fill : {"constant", "mean", "blur", "noise"} or callable
        ``constant``: ``value``; ``mean``: each image's per-channel mean; ``blur``: a Gaussian
        blur of the image (RISE's insertion substrate, kernel ``blur_size``, ``blur_sigma``,
        reflect padding); ``noise``: Gaussian noise with each image's per-channel mean and
        standard deviation, drawn from ``seed``. These three need inputs ``(N, C, ...)``; a
        callable maps the inputs ``(N, ...)`` to a substrate of the same shape.
    """

    fill: str | Callable[[Tensor], Tensor] = "constant"
    value: float = 0.0
    blur_size: int = 11
    blur_sigma: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not callable(self.fill) and self.fill not in FILLS:
            raise InvalidParameterError(
                f"The 'fill' parameter must be one of {', '.join(map(repr, FILLS))}, a number or a "
                f"callable. Got {self.fill!r} instead."
            )
        check_float(self.value, "value", "Removal")
        check_int(self.blur_size, "blur_size", "Removal", low=1)
        check_float(self.blur_sigma, "blur_sigma", "Removal", low=0.0, low_open=True)
        check_int(self.seed, "seed", "Removal")

    def describe(self) -> str:
        """A short record of the fill for result tables."""
        if callable(self.fill):
            return getattr(self.fill, "__name__", "callable")
        if self.fill == "constant":
            return f"constant({self.value:g})"
        if self.fill == "blur":
            return f"blur({self.blur_size},{self.blur_sigma:g})"
        return str(self.fill)

    def substrate(self, inputs: Tensor) -> Tensor:
        """What every feature of ``inputs`` would be if it were removed (same shape)."""
        if callable(self.fill):
            result = self.fill(inputs)
            if not isinstance(result, Tensor) or result.shape != inputs.shape:
                got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
                raise ShapeError(
                    f"A callable fill must return a tensor of the inputs' shape "
                    f"{tuple(inputs.shape)}. Got {got} instead."
                )
            return result.to(device=inputs.device, dtype=inputs.dtype)
        if self.fill == "constant":
            return torch.full_like(inputs, self.value)
        if inputs.dim() < 3:
            raise InvalidParameterError(
                f"The fill {self.fill!r} is computed per image and channel, so it needs inputs "
                f"(N, C, ...). Got shape {tuple(inputs.shape)}; for tabular rows give the "
                "baseline as a number (fill=0.0) or a callable, e.g. "
                "lambda x: background.mean(0).expand_as(x)."
            )
        dims = tuple(range(2, inputs.dim()))
        mean = inputs.mean(dim=dims, keepdim=True)
        if self.fill == "mean":
            return mean.expand_as(inputs).clone()
        if self.fill == "noise":
            generator = torch.Generator(device=inputs.device).manual_seed(self.seed)
            noise = torch.randn(
                inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype
            )
            return mean + noise * inputs.std(dim=dims, keepdim=True)
        return gaussian_blur(inputs, self.blur_size, self.blur_sigma)


def gaussian_blur(images: Tensor, size: int, sigma: float) -> Tensor:
    """Depthwise Gaussian blur of ``(N, C, H, W)`` images with reflect padding.

    Any kernel fits any image: where the kernel reaches further than one reflection of a short
    axis, the padding reflects again (scipy.ndimage's ``mode="mirror"``; the same as torch's
    ``"reflect"`` wherever that one applies), and an axis of one pixel is constant along itself,
    so a 1-pixel-high image is blurred along its width only.
    """
    if images.dim() != 4:
        raise ShapeError(f"Blur needs images of shape (N, C, H, W). Got {tuple(images.shape)}.")
    half = size // 2
    offsets = torch.arange(size, device=images.device, dtype=images.dtype) - (size - 1) / 2
    kernel_1d = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    channels = images.shape[1]
    if half < min(images.shape[-2:]):
        padded = F.pad(images, (half, size - 1 - half, half, size - 1 - half), mode="reflect")
    else:
        padded = _mirror_pad(images, -2, half, size - 1 - half)
        padded = _mirror_pad(padded, -1, half, size - 1 - half)
    rows = F.conv2d(
        padded,
        kernel_1d.view(1, 1, 1, size).expand(channels, 1, 1, size).contiguous(),
        groups=channels,
    )
    return F.conv2d(
        rows,
        kernel_1d.view(1, 1, size, 1).expand(channels, 1, size, 1).contiguous(),
        groups=channels,
    )


def _mirror_pad(images: Tensor, dim: int, before: int, after: int) -> Tensor:
    """``images`` padded along ``dim`` by reflection about the edge pixels, repeated as often as
    the padding needs (``a b c`` -> ``... c b | a b c | b a ...``); a length-1 axis repeats."""
    length = images.shape[dim]
    index = torch.arange(-before, length + after, device=images.device)
    if length == 1:
        index = torch.zeros_like(index)
    else:
        period = 2 * (length - 1)
        index = index.remainder(period)
        index = torch.where(index < length, index, period - index)
    return images.index_select(dim, index)


def make_removal(fill: FillLike | Removal) -> Removal:
    """A :class:`Removal` from a fill name, a constant, a callable or a Removal."""
    if isinstance(fill, Removal):
        return fill
    if isinstance(fill, bool):
        raise InvalidParameterError(f"The 'fill' parameter cannot be a bool. Got {fill!r}.")
    if isinstance(fill, int | float):
        return Removal(fill="constant", value=float(fill))
    return Removal(fill=fill)


def blend(inputs: Tensor, substrate: Tensor, keep: Tensor) -> Tensor:
    """Keep ``inputs`` where ``keep`` is 1, ``substrate`` where it is 0 (one fused op)."""
    return torch.lerp(substrate, inputs, keep.to(inputs.dtype))


def score_removals(
    model: Model,
    inputs: Tensor,
    target: Target,
    substrate: Tensor,
    masks: MaskRows,
    per_sample: int,
    *,
    activation: Activation = "softmax",
) -> Tensor:
    """Target scores ``(N, per_sample)`` of each input with features removed.

    ``masks(samples, indices)`` gives the keep-masks of one batch of rows; the perturbed rows are
    built by :func:`blend` on the inputs' device, batch by batch, and scored through ``model``.
    """

    def rows(samples: Tensor, indices: Tensor) -> Tensor:
        return blend(inputs[samples], substrate[samples], masks(samples, indices))

    return model.score_rows(
        inputs.shape[0], per_sample, rows, target, activation=activation, device=inputs.device
    )


FILL_OR_REMOVAL: ConstraintList = [*FILL, InstanceOf((Removal,), "a Removal")]
"""The constraint of a metric's ``fill`` parameter: a fill or a configured :class:`Removal`."""
