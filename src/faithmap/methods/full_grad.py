"""FullGrad: the input-gradient map plus every convolution's bias-gradient map."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.errors import ModelError

HANDLED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
"""The layers whose bias FullGrad separates; any other layer with parameters is refused."""


def implied_bias(layer: nn.Conv2d | nn.BatchNorm2d) -> Tensor:
    """The per-channel constant a layer adds: a convolution's bias, or an eval-mode batch
    norm's ``beta - gamma * mean / sqrt(var + eps)`` (its running statistics folded in)."""
    if isinstance(layer, nn.Conv2d):
        assert layer.bias is not None  # bias layers are chosen by having one
        return layer.bias.detach()
    mean, var = layer.running_mean, layer.running_var
    assert mean is not None and var is not None  # checked by bias_layers
    scale = torch.rsqrt(var + layer.eps)
    if layer.weight is not None:
        scale = scale * layer.weight.detach()
    shift = -mean * scale
    return shift + layer.bias.detach() if layer.bias is not None else shift


def bias_layers(model: Model) -> dict[str, nn.Conv2d | nn.BatchNorm2d]:
    """The model's convolutions with a bias and its batch norms, by name.

    Raises
    ------
    ModelError
        If the model is not an ``nn.Module``; if a layer with parameters is not an
        ``nn.Conv2d``, ``nn.BatchNorm2d`` or ``nn.Linear`` (its bias term cannot be separated);
        if a batch norm has no running statistics or would run in training mode.
    """
    module = model.module
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"FullGrad reads the biases inside the model, so it needs an nn.Module. Got "
            f"{type(module).__name__} instead; use a perturbation method such as occlusion."
        )
    found: dict[str, nn.Conv2d | nn.BatchNorm2d] = {}
    for name, layer in module.named_modules():
        owned = [key for key, _ in layer.named_parameters(recurse=False)]
        if owned and not isinstance(layer, HANDLED):
            where = f"the layer {name!r}" if name else "the model itself"
            raise ModelError(
                f"FullGrad separates the bias terms of nn.Conv2d, nn.BatchNorm2d and nn.Linear "
                f"layers only, and {where} ({type(layer).__name__}) holds parameters "
                f"{owned} whose contribution it cannot separate. Use grad_cam, layer_cam or "
                "integrated_gradients for this model."
            )
        if isinstance(layer, nn.BatchNorm2d):
            if layer.running_mean is None or layer.running_var is None:
                raise ModelError(
                    f"The batch norm {name!r} keeps no running statistics "
                    "(track_running_stats=False), so its bias depends on the batch and FullGrad "
                    "cannot read it. Use grad_cam or integrated_gradients for this model."
                )
            if layer.training and not model.eval_mode:
                raise ModelError(
                    f"The batch norm {name!r} is in training mode and the Model keeps it so "
                    "(eval_mode=False): its bias would depend on the batch. Wrap the model "
                    "with Model(net, eval_mode=True) (the default)."
                )
            found[name] = layer
        elif isinstance(layer, nn.Conv2d) and layer.bias is not None:
            found[name] = layer
    return found


def rescaled(values: Tensor) -> Tensor:
    """``|values|`` min-max scaled to [0, 1] per sample, over all its channels and positions
    (a constant map becomes zeros)."""
    magnitude = values.abs()
    flat = magnitude.flatten(1)
    low = flat.amin(dim=1).view(-1, *[1] * (values.dim() - 1))
    span = flat.amax(dim=1).view_as(low) - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (magnitude - low) / safe, torch.zeros_like(magnitude))


@register_method("full_grad")
@dataclass(frozen=True, kw_only=True)
class FullGrad(Method):
    """Full-gradient saliency (Srinivas & Fleuret 2019).

    For a piecewise-linear network the output is exactly the sum of the input term
    ``grad_x f * x`` and one bias term ``grad_b f * b`` per bias (the full-gradient
    decomposition). The map is ``psi(grad_x f * x) + sum_l sum_c psi(grad_b f * b)_lc`` with
    ``psi`` the absolute value, min-max scaled to [0, 1] per sample over a term's channels and
    positions, and bilinearly upsampled to the input size (``align_corners=True``, as the
    reference code), summed over channels. The bias terms are those of every ``nn.Conv2d``
    with a bias and of every ``nn.BatchNorm2d`` (its running statistics folded into its
    bias), one map per call of the layer; an ``nn.Linear`` head's bias has no spatial extent
    and adds nothing to the map. Layers with other parameters are refused (see
    :func:`bias_layers`). The target score is the logit, and the input term uses the input as
    given, before any preprocessing the model declares. One forward and one backward pass per
    input.

    pytorch-grad-cam's ``FullGrad`` scales each channel of each term separately and resizes
    with OpenCV (half-pixel centres); the two agree when every term has one channel and every
    layer keeps the input's size.

    References
    ----------
    Srinivas, Fleuret, "Full-Gradient Representation for Neural Network Visualization",
    NeurIPS 2019.
    """

    image_only: ClassVar[bool] = True

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        layers = bias_layers(model)
        biases = {name: implied_bias(layer) for name, layer in layers.items()}
        size = (inputs.shape[-2], inputs.shape[-1])
        gradients: list[tuple[str, Tensor]] = []
        cam = inputs.new_zeros((inputs.shape[0], 1, *size))

        def rows(samples: Tensor, _: Tensor) -> Tensor:
            gradients.clear()  # forgets what batch-size measurement passes left behind
            return inputs[samples]

        def consume(samples: Tensor, _: Tensor, batch: Tensor, gradient: Tensor) -> None:
            total = rescaled(gradient * batch).sum(dim=1, keepdim=True)
            for name, grad in gradients:
                term = rescaled(grad * biases[name].view(1, -1, 1, 1))
                upsampled = F.interpolate(term, size=size, mode="bilinear", align_corners=True)
                total = total + upsampled.sum(dim=1, keepdim=True)
            cam[samples] = total.to(cam.dtype)

        handles: list[RemovableHandle] = []
        try:
            for name, layer in layers.items():
                handles.append(layer.register_forward_hook(_keeper(name, gradients)))
            for linear in model_linears(model):
                handles.append(linear.register_forward_hook(_flat_output))
            model.gradient_rows(
                inputs.shape[0], 1, rows, target, consume, activation="logits", device=inputs.device
            )
        finally:
            for handle in handles:
                handle.remove()
        return cam


def model_linears(model: Model) -> list[nn.Linear]:
    """The model's ``nn.Linear`` layers with a bias (their output must have no spatial extent)."""
    module = model.module
    assert isinstance(module, nn.Module)  # checked by bias_layers
    return [
        layer
        for layer in module.modules()
        if isinstance(layer, nn.Linear) and layer.bias is not None
    ]


def _keeper(name: str, store: list[tuple[str, Tensor]]) -> Callable[[nn.Module, Any, Tensor], Any]:
    """A forward hook keeping the gradient that reaches the layer's output in ``store``."""

    def hook(_: nn.Module, __: Any, output: Tensor) -> Any:
        if not (torch.is_grad_enabled() and output.requires_grad):
            return None

        def keep(gradient: Tensor) -> None:
            store.append((name, gradient))

        output.register_hook(keep)  # type: ignore[no-untyped-call]
        return output.clone()  # in-place operations after the layer leave the hooked tensor be

    return hook


def _flat_output(layer: nn.Module, _: Any, output: Tensor) -> None:
    if output.dim() > 2:
        raise ModelError(
            f"FullGrad met an nn.Linear ({layer}) with output shape {tuple(output.shape)}: a "
            "linear layer over positions adds a spatial bias that FullGrad does not separate. "
            "Use grad_cam, layer_cam or integrated_gradients for this model."
        )
