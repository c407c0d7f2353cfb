"""Score-CAM: a layer's maps weighted by the model's score on the input they mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec, make_removal, score_removals
from faithmap.core.targets import Target
from faithmap.methods.layers import LayerMethod, layer_activations, upsample


def normalised_masks(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Maps ``(B, h, w)`` upsampled to ``size`` and min-max scaled to [0, 1]: ``(B, 1, H, W)``.

    A constant map has no shape to show and becomes an all-zero mask.
    """
    masks = upsample(maps.unsqueeze(1), size)
    low = masks.amin(dim=(2, 3), keepdim=True)
    span = masks.amax(dim=(2, 3), keepdim=True) - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (masks - low) / safe, torch.zeros_like(masks))


@register_method("score_cam")
@dataclass(frozen=True, kw_only=True)
class ScoreCam(LayerMethod):
    """Score-weighted class activation mapping (Wang et al. 2020).

    Each map ``A_k`` of the layer, upsampled to the input size and min-max scaled to [0, 1],
    masks the input (``H_k * x + (1 - H_k) * fill``; the paper's ``H_k * x`` with the default
    ``fill=0``); the target scores ``S_k`` of these masked inputs give the weights
    ``alpha = softmax_k(S_k)`` (Algorithm 1 of the paper), and the map is
    ``ReLU(sum_k alpha_k A_k)``, upsampled bilinearly to the input size. The baseline score
    the paper subtracts is the same for every channel, so the softmax cancels it. One forward
    pass per input for the maps, then one per input and channel, streamed through the model in
    batches of (input, channel) rows.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What the masked-out input becomes (a removal fill; a number is a constant).
    relu : bool, default=True
        Apply the paper's final ReLU.
    activation : {"logits", "softmax"}, default="logits"
        Score the masked inputs by the class logit (the paper's ``f^c``) or its probability.

    References
    ----------
    Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu, "Score-CAM: Score-Weighted Visual
    Explanations for Convolutional Neural Networks", CVPR Workshops 2020.
    """

    parameter_constraints: ClassVar[Constraints] = {
        "fill": FILL,
        "relu": [BOOLEAN],
        "activation": [ACTIVATION],
    }

    fill: FillSpec = 0.0
    relu: bool = True
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        maps = layer_activations(
            model, inputs, layer=self.layer, prefix_tokens=self.prefix_tokens, owner="ScoreCam"
        )
        size = (inputs.shape[-2], inputs.shape[-1])

        def masks(samples: Tensor, channels: Tensor) -> Tensor:
            return normalised_masks(maps[samples, channels], size)

        substrate = make_removal(self.fill).substrate(inputs)
        scores = score_removals(
            model, inputs, target, substrate, masks, maps.shape[1], activation=self.activation
        )
        weights = scores.softmax(dim=1).to(maps.dtype)
        cam = torch.einsum("nk,nkhw->nhw", weights, maps).unsqueeze(1)
        return upsample(cam.relu() if self.relu else cam, size)
