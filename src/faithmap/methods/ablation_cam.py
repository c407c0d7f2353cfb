"""Ablation-CAM: a layer's maps weighted by the drop in score when each one is zeroed."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from faithmap.core.constraints import BOOLEAN, Constraints
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.errors import ShapeError, TargetError
from faithmap.methods.layers import (
    LayerMethod,
    as_maps,
    find_layer,
    layer_activations,
    upsample,
)


class ChannelAblation:
    """A forward hook zeroing one channel of a layer's output per row of a batch.

    :attr:`plan` holds the batch's ``(samples, channels)``: row ``r`` comes from input
    ``samples[r]`` and gets channel ``channels[r]`` zeroed (``-1``: none). A pass whose batch
    is not the planned one (the model measuring its batch size) goes through untouched. The
    untouched output of each sample is kept in :attr:`intact`. The hook is removed on exit.
    """

    def __init__(self, name: str, module: nn.Module, n_samples: int) -> None:
        self.name, self.module, self.n_samples = name, module, n_samples
        self.plan: tuple[Tensor, Tensor] | None = None
        self.intact: Tensor | None = None
        self._handle: RemovableHandle | None = None

    def __enter__(self) -> ChannelAblation:
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

    def _hook(self, _: nn.Module, __: Any, output: Any) -> Any:
        is_tuple = isinstance(output, tuple) and len(output) > 0
        tensor = output[0] if is_tuple else output
        if self.plan is None or not isinstance(tensor, Tensor):
            return None
        samples, channels = self.plan
        if tensor.shape[0] != samples.shape[0] or tensor.dim() not in (3, 4):
            return None
        if self.intact is None:
            self.intact = tensor.new_zeros((self.n_samples, *tensor.shape[1:]))
        whole = channels < 0
        self.intact[samples[whole]] = tensor[whole]
        rows = torch.arange(tensor.shape[0], device=tensor.device)[~whole]
        ablated = tensor.clone()
        if tensor.dim() == 4:
            ablated[rows, channels[~whole]] = 0
        else:  # tokens (N, T, D): the feature is zeroed in every token
            ablated[rows, :, channels[~whole]] = 0
        return (ablated, *output[1:]) if is_tuple else ablated


@register_method("ablation_cam")
@dataclass(frozen=True, kw_only=True)
class AblationCam(LayerMethod):
    """Ablation-CAM: gradient-free channel weights from ablation (Desai & Ramaswamy 2020).

    With ``y`` the target score and ``y_k`` the score when channel ``k`` of the layer's output
    is set to zero, the weight of map ``A_k`` is ``w_k = (y - y_k) / y`` and the map is
    ``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size. For a transformer layer
    ``(N, T, D)`` a channel is one of the ``D`` features, zeroed in every token. The
    unablated pass and the ``K`` ablated ones of every input are rows of one stream through
    :meth:`faithmap.Model.score_rows`: a hook zeroes a different channel in each row, so a
    batch ablates many channels at once. ``N (K + 1)`` forward passes, one more to count the
    channels, no backward pass.

    pytorch-grad-cam zeroes a channel only when the layer's smallest activation is 0 (a layer
    after a ReLU); otherwise it sets it to that minimum minus ``1e7``. faithmap always zeroes,
    as the paper does; the two agree on layers after a ReLU.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Apply the paper's final ReLU.
    activation : {"logits", "softmax"}, default="logits"
        The score ``y``: the class logit (the paper's class score) or its probability.

    References
    ----------
    Desai, Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "relu": [BOOLEAN],
        "activation": [ACTIVATION],
    }

    relu: bool = True
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        name, module = find_layer(model, self.layer, "AblationCam")
        channels = layer_activations(
            model, inputs[:1], layer=name, prefix_tokens=self.prefix_tokens, owner="AblationCam"
        ).shape[1]
        ablation = ChannelAblation(name, module, inputs.shape[0])

        def rows(samples: Tensor, indices: Tensor) -> Tensor:
            ablation.plan = (samples, indices - 1)
            return inputs[samples]

        with ablation:
            scores = model.score_rows(
                inputs.shape[0],
                channels + 1,
                rows,
                target,
                activation=self.activation,
                device=inputs.device,
            )
        if ablation.intact is None:
            raise ShapeError(
                f"The layer {name!r} did not return one (N, C, h, w) map or (N, T, D) token "
                "tensor per row, so AblationCam cannot zero its channels; choose another layer."
            )
        size = (inputs.shape[-2], inputs.shape[-1])
        maps = as_maps(ablation.intact, inputs.shape[0], size, self.prefix_tokens)
        original, ablated = scores[:, :1], scores[:, 1:]
        zero = (original == 0).flatten()
        if bool(zero.any()):
            raise TargetError(
                f"AblationCam divides by the target score, which is exactly 0 for the inputs "
                f"{zero.nonzero().flatten().tolist()}. Explain another target, or change "
                f"'activation' (now {self.activation!r})."
            )
        weights = ((original - ablated) / original).to(maps.dtype)
        cam = torch.einsum("nk,nkhw->nhw", weights, maps).unsqueeze(1)
        return upsample(cam.relu() if self.relu else cam, size)
