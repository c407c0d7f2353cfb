"""XGrad-CAM: a layer's maps weighted by their activation-weighted mean gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.methods.layers import GradientCam


@register_method("xgrad_cam")
@dataclass(frozen=True, kw_only=True)
class XGradCam(GradientCam):
    """Axiom-based Grad-CAM (Fu et al. 2020).

    Each map ``A_k`` is weighted by ``w_k = sum_ij (A_k,ij / sum_ab A_k,ab) * dS/dA_k,ij``, the
    gradient averaged with the map's own activations as weights (the choice that best satisfies
    the paper's sensitivity and conservation axioms), and the map is ``ReLU(sum_k w_k A_k)``,
    upsampled bilinearly to the input size. A map summing to zero gets weight zero; the paper
    leaves it undefined and pytorch-grad-cam adds ``1e-7`` to the sum instead. One forward and
    one backward pass per input.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Apply the final ReLU, as Grad-CAM does.
    activation : {"logits", "softmax"}, default="logits"
        Differentiate the class score before or after the softmax.

    References
    ----------
    Fu, Hu, Dong, Guo, Gao, Li, "Axiom-based Grad-CAM: Towards Accurate Visualization and
    Explanation of CNNs", BMVC 2020.
    """

    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        totals = maps.sum(dim=(2, 3), keepdim=True)
        safe = torch.where(totals != 0, totals, torch.ones_like(totals))
        shares = torch.where(totals != 0, maps / safe, torch.zeros_like(maps))
        weights = (shares * gradients).sum(dim=(2, 3), keepdim=True)
        return (weights * maps).sum(dim=1, keepdim=True)
