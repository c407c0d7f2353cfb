"""HiRes-CAM: a layer's maps times their gradient, element by element, summed over channels."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.methods.layers import GradientCam


@register_method("hires_cam")
@dataclass(frozen=True, kw_only=True)
class HiResCam(GradientCam):
    """High-resolution class activation mapping (Draelos & Carin 2020).

    The map is ``ReLU(sum_k dS/dA_k * A_k)``, upsampled bilinearly to the input size: each
    position of each map ``A_k`` is weighted by its own gradient, with no spatial averaging of
    the gradient (Grad-CAM's step that can move evidence to where the model did not look). For
    a layer read by global average pooling and a linear layer it is the original CAM. Unlike
    Layer-CAM, negative gradients are kept. One forward and one backward pass per input.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Clip the map at zero, as Grad-CAM (and pytorch-grad-cam for every CAM) does; ``False``
        gives the signed map.
    activation : {"logits", "softmax"}, default="logits"
        Differentiate the class score before or after the softmax.

    References
    ----------
    Draelos, Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
    convolutional neural networks", arXiv:2011.08891, 2020.
    """

    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        return (gradients * maps).sum(dim=1, keepdim=True)
