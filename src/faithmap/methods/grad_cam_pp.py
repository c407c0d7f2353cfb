"""Grad-CAM++: Grad-CAM with pixel-wise weights from higher-order derivatives."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.registry import register_method
from faithmap.methods.layers import GradientCam


@register_method("grad_cam_pp")
@dataclass(frozen=True, kw_only=True)
class GradCamPlusPlus(GradientCam):
    """Grad-CAM++ in its closed form (Chattopadhay et al. 2018).

    With ``g = dS/dA`` the gradient of the class score ``S`` and the paper's exponential score
    ``Y = exp(S)``, the second and third derivatives of ``Y`` are ``exp(S) g^2`` and
    ``exp(S) g^3`` for a piecewise-linear network, and the pixel weights (the paper's Eq. 19)
    become ``a_ij^k = g^2 / (2 g^2 + sum_ab A_ab^k g^3)``, taken as 0 where the denominator is 0
    (where ``g`` is 0). The channel weights are ``w_k = sum_ij a_ij^k ReLU(g_ij^k)`` and the map
    is ``ReLU(sum_k w_k A_k)``, upsampled bilinearly to the input size. The paper's ``w_k``
    carries a further factor ``exp(S)``, the same for every channel and position of a sample;
    like pytorch-grad-cam, faithmap leaves it out, since it only rescales each map and
    overflows for large logits. One forward and one backward pass per input.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    relu : bool, default=True
        Apply the paper's final ReLU.
    activation : {"logits", "softmax"}, default="logits"
        The score ``S``: the class logit (the paper) or its softmax.

    References
    ----------
    Chattopadhay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++: Generalized Gradient-Based
    Visual Explanations for Deep Convolutional Networks", WACV 2018.
    """

    def combine(self, maps: Tensor, gradients: Tensor) -> Tensor:
        squared = gradients.square()
        denominator = 2 * squared + maps.sum(dim=(2, 3), keepdim=True) * squared * gradients
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alphas = torch.where(denominator != 0, squared / safe, torch.zeros_like(squared))
        weights = (alphas * gradients.relu()).sum(dim=(2, 3), keepdim=True)
        return (weights * maps).sum(dim=1, keepdim=True)
