"""Grad-CAM: a layer's maps weighted by the spatial mean of the target score's gradient."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.methods.layers import GradientCam


@register_method("grad_cam")
@dataclass(frozen=True, kw_only=True)
class GradCam(GradientCam):
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

    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        return (weights * maps).sum(dim=1, keepdim=True)
