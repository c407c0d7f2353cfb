"""Feature ablation: the drop in the target score when one feature at a time is removed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from faithmap.core.constraints import Constraints
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.readout import ACTIVATION, Activation
from faithmap.core.regions import REGIONS, RegionsLike
from faithmap.core.registry import register_method
from faithmap.core.removal import FILL, FillSpec
from faithmap.core.targets import Target
from faithmap.methods.coalitions import make_features, score_coalitions


@register_method("feature_ablation")
@dataclass(frozen=True, kw_only=True)
class FeatureAblation(Method):
    """Leave-one-feature-out attribution.

    A feature's attribution is ``score(x) - score(x with the feature removed)``, painted on every
    pixel of its region (each column of a tabular batch ``(N, F)`` is a feature). Costs
    ``R + 1`` forward passes per input for ``R`` features.

    Parameters
    ----------
    regions : str, Regions, Tensor or list of lists, default="slic:25"
        The features of an image: ``"patches:K"``, ``"slic:K"``, ``"pixels"`` or a label map
        (see :func:`faithmap.core.regions.make_regions`). For a tabular batch ``(N, F)``: every
        column (``"columns"``, or an image spec such as the default), windows of ``K`` columns
        (``"windows:K"``), or feature groups (a list of column-index lists, or an ``(F,)``
        integer label array), each column getting its group's value.
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What a removed feature becomes.
    activation : {"logits", "softmax"}, default="logits"

    References
    ----------
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014;
    Covert, Lundberg, Lee, "Explaining by Removing: A Unified Framework for Model Explanation",
    JMLR 22, 2021.

    Examples
    --------
    >>> import torch, faithmap
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    >>> exp = faithmap.explain(net, torch.rand(2, 3, 8, 8), method="feature_ablation",
    ...                        regions="patches:4")
    >>> exp.attributions.shape
    torch.Size([2, 1, 8, 8])
    """

    parameter_constraints: ClassVar[Constraints] = {
        "regions": REGIONS,
        "fill": FILL,
        "activation": [ACTIVATION],
    }

    regions: RegionsLike = "slic:25"
    fill: FillSpec = 0.0
    activation: Activation = "logits"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        features = make_features(self.regions, inputs)
        count = features.count

        def coalitions(indices: Tensor) -> Tensor:
            # Coalition 0 keeps everything, coalition i > 0 removes feature i - 1; built per
            # batch, so R features never cost an (R + 1, R) matrix.
            keep = torch.ones(indices.shape[0], count, device=indices.device)
            removed = (indices > 0).nonzero().squeeze(1)
            keep[removed, indices[removed] - 1] = 0.0
            return keep

        scores = score_coalitions(
            model,
            inputs,
            target,
            features,
            self.fill,
            coalitions,
            count + 1,
            activation=self.activation,
        )
        drops = scores[:, :1] - scores[:, 1:]
        return features.paint(drops).to(inputs.dtype)
