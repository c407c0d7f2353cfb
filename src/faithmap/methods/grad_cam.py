"""Grad-CAM: a layer's maps weighted by the spatial mean of the target score's gradient."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from faithmap.methods.layers import LayerMethod, layer_gradients, upsample
from faithmap.model import Activation, Model, check_activation
from faithmap.registry import register
from faithmap.targets import Target


@register("grad_cam")
@dataclass(frozen=True, kw_only=True)
class GradCam(LayerMethod):
    """Gradient-weighted class activation mapping (Selvaraju et al. 2017).

    Each map ``A_k`` of the layer is weighted by ``alpha_k``, the mean over positions of the
    gradient of the target score with respect to it; the map is ``ReLU(sum_k alpha_k A_k)``,
    upsampled bilinearly to the input size. One forward and one backward pass per input (the
    backward pass stops at the layer).

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Keep only positive evidence, as the paper does.
    activation : {"logits", "softmax"}, default="logits"
        Differentiate the class score before the softmax (the paper's ``y^c``) or after.

    References
    ----------
    Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra, "Grad-CAM: Visual Explanations from Deep
    Networks via Gradient-based Localization", ICCV 2017.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(
    ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> GradCam(layer="0").explain(net, torch.rand(2, 3, 8, 8)).attributions.shape
    torch.Size([2, 1, 8, 8])
    """

    relu: bool = True
    activation: Activation = "logits"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_activation(self.activation, "GradCam")

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        maps, gradients = layer_gradients(
            model,
            inputs,
            target,
            layer=self.layer,
            prefix_tokens=self.prefix_tokens,
            activation=self.activation,
            owner="GradCam",
        )
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        cam = (weights * maps).sum(dim=1, keepdim=True)
        return upsample(cam.relu() if self.relu else cam, (inputs.shape[-2], inputs.shape[-1]))
