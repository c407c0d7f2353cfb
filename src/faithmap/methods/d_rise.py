"""D-RISE: RISE's random masks weighted by how well each masked image still shows the object.

D-RISE explains one detection ``d_t``: for each random mask ``M_i`` the detector runs on the
masked image and the mask is weighted by ``w_i = max_j s(d_t, D_j)`` over its detections
``D_j``; the map is ``sum_i w_i M_i``. The paper's similarity is ``IoU(L_t, L_j) *
cos(P_t, P_j) * O_j`` (box overlap, cosine of the class vectors, objectness). Here the
similarity is the callable target's score of each masked image: with
:class:`~faithmap.core.detection.BoxTarget` it is ``max_j IoU(L_t, L_j) * P_j[c]``, the form
the VPS paper's D-RISE baseline uses, and with ``YoloAdapter(objectness=True)`` the class
score already carries the objectness, ``IoU * O_j * P_j[c]``; the cosine's division by
``||P_j||`` is not applied. The masks are RISE's (:class:`~faithmap.methods.rise.Rise`).

References
----------
Petsiuk, Jain, Manjunatha, Morariu, Mehra, Ordonez, Saenko, "Black-box Explanation of Object
Detectors via Saliency Maps", CVPR 2021.
"""

from __future__ import annotations

from dataclasses import dataclass

from faithmap.core.readout import Activation
from faithmap.core.registry import register_method
from faithmap.methods.rise import Rise


@register_method("d_rise")
@dataclass(frozen=True, kw_only=True)
class DRise(Rise):
    """D-RISE saliency of one detection from random masks (Petsiuk et al. 2021).

    RISE (:class:`~faithmap.methods.rise.Rise`) with the paper's masks and the raw outputs:
    ``sum_i s_i * M_i / (n_masks * p)``, where ``s_i`` is the target's score of the image
    masked by ``M_i``. Explain a detection with a callable target that scores it on each row
    of the detector's raw outputs, such as :class:`~faithmap.core.detection.BoxTarget` (IoU
    times class score of the best-matching prediction; see the module docstring for what the
    paper's similarity adds). The paper sums without dividing; the division by
    ``n_masks * p``, as RISE's, only makes the scale independent of the number of masks.

    Parameters
    ----------
    n_masks : int, default=5000
        Number of masks (forward passes per image), the paper's setting.
    grid : int, default=16
        The masks' ``grid x grid`` cells (the paper's 16 x 16).
    keep_probability : float, default=0.5
    fill : {"constant", "mean", "blur", "noise"} or float, default=0.0
        What masked pixels become (the paper multiplies the image by the mask: black).
    activation : {"logits", "softmax", "log_odds"}, default="logits"
        The readout the target reads: ``"logits"`` hands it the detector's raw outputs (a
        box target needs them); a class target on a classifier then weighs masks by the logit.
    seed : int, default=0

    References
    ----------
    Petsiuk, Jain, Manjunatha, Morariu, Mehra, Ordonez, Saenko, "Black-box Explanation of
    Object Detectors via Saliency Maps", CVPR 2021.
    """

    n_masks: int = 5000
    grid: int = 16
    activation: Activation = "logits"
