"""Eigen-CAM: a layer's activations projected on their first principal component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import BOOLEAN, Constraints
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.methods.layers import LayerMethod, layer_activations, upsample


def first_component_projection(maps: Tensor, *, center: bool) -> Tensor:
    """Each sample's maps ``(N, K, h, w)`` projected on their first principal direction.

    The ``h * w`` positions are the observations and the ``K`` channels the variables; the
    direction is the first right singular vector ``v`` of that ``(h * w, K)`` matrix (centred
    over positions first if ``center``), signed so that ``sum_k v_k >= 0``: the projection then
    grows with the channels' summed activation, so that for non-negative (post-ReLU) maps the
    uncentred projection is non-negative. Returns ``(N, 1, h, w)``.
    """
    n, _, h, w = maps.shape
    matrix = maps.flatten(2).transpose(1, 2)
    if center:
        matrix = matrix - matrix.mean(dim=1, keepdim=True)
    _, _, right = torch.linalg.svd(matrix, full_matrices=False)
    direction = right[:, 0, :]
    sign = torch.where(direction.sum(dim=1, keepdim=True) < 0, -1.0, 1.0).to(direction)
    projection: Tensor = matrix @ (sign * direction).unsqueeze(2)
    return projection.transpose(1, 2).reshape(n, 1, h, w)


@register_method("eigen_cam")
@dataclass(frozen=True, kw_only=True)
class EigenCam(LayerMethod):
    """Eigen-CAM: the first principal component of a layer's maps (Muhammad & Yeasin 2020).

    The layer's maps are arranged as a matrix of positions by channels and projected on its
    first right singular vector, signed so that its entries sum to a non-negative number (the
    singular vector's sign is otherwise arbitrary; see :func:`first_component_projection`).
    The map is upsampled bilinearly to the input size. The target is not used: Eigen-CAM is
    class-agnostic. One forward pass per input and no backward pass.

    Parameters
    ----------
    layer : str or None, default=None
        Dotted layer name; ``None``: the last ``nn.Conv2d``. See :class:`LayerMethod`.
    prefix_tokens : int or None, default=None
        Class and register tokens of a transformer layer; see :class:`LayerMethod`.
    center : bool, default=False
        Centre each channel over positions before the decomposition. The paper decomposes the
        maps as they are; pytorch-grad-cam centres them.
    relu : bool, default=False
        Clip the projection at zero (the paper does not; pytorch-grad-cam does).

    References
    ----------
    Muhammad, Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.
    """

    parameter_constraints: ClassVar[Constraints] = {"center": [BOOLEAN], "relu": [BOOLEAN]}

    center: bool = False
    relu: bool = False

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        maps = layer_activations(
            model, inputs, layer=self.layer, prefix_tokens=self.prefix_tokens, owner="EigenCam"
        )
        cam = first_component_projection(maps, center=self.center)
        return upsample(cam.relu() if self.relu else cam, (inputs.shape[-2], inputs.shape[-1]))
