"""Layer-CAM: a layer's maps weighted position by position by their positive gradients."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.methods.layers import GradientCam


@register_method("layer_cam")
@dataclass(frozen=True, kw_only=True)
class LayerCam(GradientCam):
    """Layer-CAM: element-wise positive-gradient weighting (Jiang et al. 2021).

    The map is ``ReLU(sum_k ReLU(dS/dA_k) * A_k)``, upsampled bilinearly to the input size:
    each position of each map is weighted by its own positive gradient instead of a
    channel-wide mean, which keeps fine detail at shallow layers. One forward and one backward
    pass per input.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Apply the paper's final ReLU.
    activation : {"logits", "softmax"}, default="logits"
        Differentiate the class score before or after the softmax.

    References
    ----------
    Jiang, Zhang, Hou, Cheng, Wei, "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE Transactions on Image Processing 30, 2021.
    """

    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        return (gradients.relu() * maps).sum(dim=1, keepdim=True)
