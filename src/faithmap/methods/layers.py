"""Looking inside a model at one layer, the ground every class activation map stands on.

A layer is named by its dotted path in ``model.named_modules()`` (``"features.3"``,
``"blocks.2"``); without a name, the last ``nn.Conv2d`` is used. A forward hook captures the
layer's output during faithmap's batched passes (:meth:`faithmap.Model.output_rows`) and, for
gradient CAMs, makes it the one tensor the backward pass is taken to, so backward stops at the
layer. The hook is removed when the pass ends, also when the model raises. Layer outputs are
returned as maps ``(N, D, h, w)``: convolutional maps as they are, and transformer token
sequences ``(N, T, D)`` with their class and register tokens dropped and the patch tokens laid
out row by row on the ``h x w`` patch grid.
"""

from __future__ import annotations

import difflib
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from faithmap.core.constraints import BOOLEAN, Constraints, InstanceOf, Interval
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.precision import full_precision
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError, ModelError, ShapeError

MAX_PREFIX_TOKENS = 16
"""The most leading (class, register, distillation) tokens dropped when guessing the grid."""
_LISTED = 40


def _named_modules(model: Model, owner: str) -> dict[str, nn.Module]:
    module = model.module
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{owner} reads a layer inside the model, so it needs an nn.Module. Got "
            f"{type(module).__name__} instead (a plain callable or an ONNX session has no "
            "layers to hook); use a perturbation method such as occlusion, rise or lima."
        )
    return {name: sub for name, sub in module.named_modules() if name}


def _candidates(names: list[str]) -> str:
    if len(names) <= _LISTED:
        return ", ".join(map(repr, names))
    shown = ", ".join(map(repr, names[-_LISTED:]))
    return f"{shown} (and {len(names) - _LISTED} earlier ones; see model.named_modules())"


def find_layer(model: Model, layer: str | None, owner: str) -> tuple[str, nn.Module]:
    """The layer named ``layer`` (dotted path); if ``None``, the model's own choice or last conv.

    With ``layer=None``, a model that names its explanation layer in a string attribute
    ``cam_layer`` (faithmap's built-in models do) gets that layer; a vision transformer (a list
    of blocks that each hold an attention module, as Hugging Face's and timm's ViTs have, and no
    convolution but its patch embedding) gets the output of its second-to-last block: its last
    convolution is the patch embedding, a poor CAM layer, and the last block's patch tokens do
    not reach the class token (their gradient is zero), the choice pytorch-grad-cam's
    documentation makes too. Any other model (a CNN with attention in its blocks, DETR's
    convolutional backbone) gets its last ``nn.Conv2d``.

    Raises
    ------
    ModelError
        If the model is not an ``nn.Module``.
    InvalidParameterError
        If no layer has that name (the message lists the valid names), or ``layer`` is
        ``None`` and the model has no ``nn.Conv2d``.
    """
    modules = _named_modules(model, owner)
    names = list(modules)
    preferred = getattr(model.module, "cam_layer", None)
    if layer is None and isinstance(preferred, str) and preferred in modules:
        return preferred, modules[preferred]
    convolutions = [name for name, sub in modules.items() if isinstance(sub, nn.Conv2d)]
    # A vision transformer's only convolutions cut the image into patches; a model with other
    # convolutions (a CNN with attention in its blocks, DETR's backbone) keeps its last one.
    patches_only = all(_cuts_patches(modules[name]) for name in convolutions)
    blocks = _attention_blocks(modules) if patches_only else []
    if layer is None and blocks:
        if len(blocks) < 2:
            raise InvalidParameterError(
                f"The model is a transformer with one block ({blocks[0]!r}); its output's patch "
                f"tokens do not reach the class token, so {owner} has no default layer. Pass "
                "layer='<name>' (a module inside that block, before its attention), or use "
                "attention_rollout, attn_lrp or integrated_gradients."
            )
        return blocks[-2], modules[blocks[-2]]
    if layer is None:
        if not convolutions:
            raise InvalidParameterError(
                f"The model has no nn.Conv2d, so {owner} cannot pick its default layer. Pass "
                "layer='<name>' (for a vision transformer, a block before the last one, whose "
                f"patch tokens still reach the class token). Valid names are: {_candidates(names)}."
            )
        return convolutions[-1], modules[convolutions[-1]]
    if layer not in modules:
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise InvalidParameterError(
            f"The 'layer' parameter of {owner} must name a submodule of the model. Got {layer!r} "
            f"instead.{hint} Valid names are: {_candidates(names)}."
        )
    return layer, modules[layer]


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__


def _cuts_patches(conv: nn.Module) -> bool:
    """Whether a convolution is a patch embedding: non-overlapping windows, stride = kernel."""
    return isinstance(conv, nn.Conv2d) and conv.kernel_size == conv.stride != (1, 1)


def _attention_blocks(modules: dict[str, nn.Module]) -> list[str]:
    """The blocks of a transformer: the elements of the last ``nn.ModuleList`` or
    ``nn.Sequential`` whose every element holds an attention module (``ViTLayer``s, BERT
    layers, timm's and faithmap's blocks); empty for a model without one."""
    found: list[str] = []
    for name, sub in modules.items():
        if not isinstance(sub, nn.ModuleList | nn.Sequential) or len(sub) == 0:
            continue
        children = [(f"{name}.{i}", child) for i, child in enumerate(sub)]
        if all(any(map(_is_attention, child.modules())) for _, child in children):
            found = [child_name for child_name, _ in children]
    return found


def fits_image(grid: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether an ``h x w`` token grid can cover an ``H x W`` image.

    It can if it has the image's aspect ratio exactly (``h * W == w * H``), or if it is the
    grid of some patch size ``p``: ``(H // p, W // p)`` (a ViT ignoring the leftover rows and
    columns) or ``(ceil(H / p), ceil(W / p))`` (a padded patch embedding).
    """
    (h, w), (height, width) = grid, size
    if h * width == w * height:
        return True
    # The patch sizes giving each floor (ceil) are an interval; the largest (smallest) patch
    # size of their intersection fits both sides if any does.
    largest = min(height // h, width // w)
    if largest >= 1 and (height // largest, width // largest) == grid:
        return True
    smallest = max(-(-height // h), -(-width // w))
    return (-(-height // smallest), -(-width // smallest)) == grid


def token_grid(tokens: int, size: tuple[int, int], prefix: int | None) -> tuple[int, int, int]:
    """``(prefix, h, w)``: leading tokens to drop and the patch grid of the rest.

    The rest must factor as ``h * w`` for a grid that :func:`fits_image`. Without ``prefix``,
    the fewest leading tokens (at most :data:`MAX_PREFIX_TOKENS`) for which that holds are
    dropped: none for a plain token map, the class token of a ViT (``197 = 1 + 14 * 14`` at
    224 x 224), the class and register tokens when there are some.
    """
    options = [prefix] if prefix is not None else range(min(MAX_PREFIX_TOKENS, tokens - 1) + 1)
    for drop in options:
        rest = tokens - drop
        divisors = [d for d in range(1, math.isqrt(max(rest, 0)) + 1) if rest % d == 0]
        grids = [grid for d in divisors for grid in ((d, rest // d), (rest // d, d))]
        fitting = [grid for grid in grids if fits_image(grid, size)]
        if fitting:
            h, w = min(fitting, key=lambda grid: abs(grid[0] * size[1] - grid[1] * size[0]))
            return drop, h, w
    dropped = f"{prefix}" if prefix is not None else f"up to {MAX_PREFIX_TOKENS}"
    raise ShapeError(
        f"A layer output of {tokens} tokens does not form a patch grid for a {size[0]} x "
        f"{size[1]} image after dropping {dropped} leading (class or register) tokens. Give "
        "the number of class and register tokens with prefix_tokens=..., or choose a layer "
        "whose output is a token sequence (N, T, D) or a map (N, C, h, w)."
    )


def as_maps(output: Tensor, rows: int, size: tuple[int, int], prefix: int | None) -> Tensor:
    """A layer's output as maps ``(rows, D, h, w)``, float32 even under a bf16/fp16 autocast;
    token sequences go onto the patch grid."""
    output = full_precision(output)
    if output.shape[0] != rows:
        raise ShapeError(
            f"The layer's output has shape {tuple(output.shape)}, not batch first for a batch of "
            f"{rows}. Layers must return (N, C, h, w) maps or (N, T, D) tokens; for "
            "nn.TransformerEncoderLayer use batch_first=True."
        )
    if output.dim() == 4:
        return output
    if output.dim() == 3:
        drop, h, w = token_grid(output.shape[1], size, prefix)
        patches = output[:, drop:]
        return patches.reshape(rows, h, w, output.shape[2]).permute(0, 3, 1, 2)
    raise ShapeError(
        f"The layer's output has shape {tuple(output.shape)}. CAM methods need a layer returning "
        "(N, C, h, w) maps or (N, T, D) tokens; choose another layer."
    )


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling of ``(N, K, h, w)`` maps to ``size`` (``align_corners=False``)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


class LayerCapture:
    """A context manager hooking one layer and keeping what it output in each forward pass.

    With ``gradients``, outside inference mode, the captured output is made a tensor that
    requires grad (cut from what came before, so backward stops there). The rest of the model
    gets a copy, so in-place operations after the layer leave the capture intact. The hook is
    removed on exit, whatever happened inside.
    """

    def __init__(self, name: str, module: nn.Module, *, gradients: bool) -> None:
        self.name, self.module, self.gradients = name, module, gradients
        self.outputs: list[Tensor] = []
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> LayerCapture:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
        self.outputs.clear()

    def _hook(self, _: nn.Module, __: Any, output: Any) -> Any:
        is_tuple = isinstance(output, tuple) and len(output) > 0
        tensor = output[0] if is_tuple else output
        if not isinstance(tensor, Tensor):
            raise ShapeError(
                f"The layer {self.name!r} returns {type(output).__name__}, not a tensor (or a "
                "tuple starting with one). Choose a layer that outputs a tensor."
            )
        if self.gradients and torch.is_grad_enabled() and not tensor.requires_grad:
            tensor = tensor.detach().requires_grad_(True)
        self.outputs.append(tensor)
        copy = tensor.clone()
        return (copy, *output[1:]) if is_tuple else copy

    def take(self) -> Tensor:
        """The output of the one forward pass since the last call (an error if not one)."""
        outputs, self.outputs = self.outputs, []
        if len(outputs) != 1:
            raise ModelError(
                f"The layer {self.name!r} ran {len(outputs)} times in one forward pass. CAM "
                "methods need a layer that runs exactly once (not a module reused in several "
                "places, such as one shared ReLU); choose another layer."
            )
        return outputs[0]


def _run(
    model: Model,
    inputs: Tensor,
    capture: LayerCapture,
    consume: Callable[[Tensor, Tensor], None],
    *,
    activation: Activation = "logits",
) -> None:
    """One pass over ``inputs`` with ``capture`` hooked; ``consume(samples, outputs)``."""

    def rows(samples: Tensor, _: Tensor) -> Tensor:
        capture.outputs.clear()  # forgets what batch-size measurement passes left behind
        return inputs[samples]

    with capture:
        model.output_rows(
            inputs.shape[0],
            1,
            rows,
            lambda samples, _, outputs: consume(samples, outputs),
            backward=capture.gradients,
            activation=activation,
            device=inputs.device,
        )


def layer_activations(
    model: Model, inputs: Tensor, *, layer: str | None, prefix_tokens: int | None, owner: str
) -> Tensor:
    """The maps ``(N, D, h, w)`` the layer outputs for ``inputs``, one forward pass each."""
    name, module = find_layer(model, layer, owner)
    capture = LayerCapture(name, module, gradients=False)
    size = (inputs.shape[-2], inputs.shape[-1])
    chunks: list[Tensor] = []

    def keep(samples: Tensor, _: Tensor) -> None:
        chunks.append(as_maps(capture.take(), samples.shape[0], size, prefix_tokens).clone())

    _run(model, inputs, capture, keep)
    return torch.cat(chunks).clone()


def layer_gradients(
    model: Model,
    inputs: Tensor,
    target: Target,
    *,
    layer: str | None,
    prefix_tokens: int | None,
    activation: Activation,
    owner: str,
) -> tuple[Tensor, Tensor]:
    """The layer's maps ``(N, D, h, w)`` and the target score's gradient with respect to them.

    One forward and one backward pass per input; the backward pass stops at the layer.
    """
    name, module = find_layer(model, layer, owner)
    capture = LayerCapture(name, module, gradients=True)
    size = (inputs.shape[-2], inputs.shape[-1])
    maps: list[Tensor] = []
    gradients: list[Tensor] = []

    def keep(samples: Tensor, outputs: Tensor) -> None:
        output = capture.take()
        scores = target.select(outputs, samples)
        gradient = None
        if scores.requires_grad:
            (gradient,) = torch.autograd.grad(scores.sum(), output, allow_unused=True)
        if gradient is None:
            raise ModelError(
                f"The target score does not depend on the layer {name!r} through autograd; "
                "choose a layer the output is computed from."
            )
        rows = samples.shape[0]
        maps.append(as_maps(output.detach(), rows, size, prefix_tokens))
        gradients.append(as_maps(gradient, rows, size, prefix_tokens))

    _run(model, inputs, capture, keep, activation=activation)
    return torch.cat(maps), torch.cat(gradients)


@dataclass(frozen=True, kw_only=True)
class LayerMethod(Method):
    """A method reading one layer of the model; see the module docstring.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted name of the layer in ``model.named_modules()``; ``None``: the layer the model
        names in its ``cam_layer`` attribute, else the last ``nn.Conv2d``. For a vision
        transformer without ``cam_layer``, name a block before the last one.
    prefix_tokens : int or None, default=None
        Leading class and register tokens of a token-sequence layer, dropped before the patch
        tokens are laid out on the grid; ``None`` drops the fewest that leave a grid with the
        image's aspect ratio (see :func:`token_grid`).
    """

    image_only: ClassVar[bool] = True
    parameter_constraints: ClassVar[Constraints] = {
        "layer": [InstanceOf((str,), "a layer name (str)"), None],
        "prefix_tokens": [Interval(int, 0), None],
    }

    layer: str | None = None
    prefix_tokens: int | None = None

    def constant_map_advice(self, inputs: Tensor) -> str:
        advice = []
        if self.params().get("relu"):
            advice.append(
                "The class evidence in the layer may be nowhere positive, which the final ReLU "
                "turns into zeros: pass relu=False for the signed map."
            )
        advice.append(
            f"{'Or name' if advice else 'Name'} another 'layer' (now {self.layer!r}): a layer "
            "the target does not read, or with a 1x1 spatial grid, gives no spatial map; or "
            "check that the model's target output depends on the input."
        )
        return " ".join(advice)


@dataclass(frozen=True, kw_only=True)
class GradientCam(LayerMethod):
    """A CAM weighting a layer's maps by the gradient of the target score (Grad-CAM family).

    Subclasses give :meth:`combine`, the coarse map from the layer's maps and gradients; the
    final ReLU (``relu``) and the bilinear upsampling to the input size are shared.

    Parameters
    ----------
    relu : bool, default=True
        Apply the papers' final ReLU to the coarse map.
    activation : {"logits", "softmax"}, default="logits"
        The score differentiated: the class logit (the papers) or its softmax.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "relu": [BOOLEAN],
        "activation": [ACTIVATION],
    }

    relu: bool = True
    activation: Activation = "logits"

    @abstractmethod
    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        """The coarse map ``(N, 1, h, w)`` from maps and gradients ``(N, K, h, w)``."""

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        maps, gradients = layer_gradients(
            model,
            inputs,
            target,
            layer=self.layer,
            prefix_tokens=self.prefix_tokens,
            activation=self.activation,
            owner=type(self).__name__,
        )
        cam = self.combine(maps, gradients)
        return upsample(cam.relu() if self.relu else cam, (inputs.shape[-2], inputs.shape[-1]))
