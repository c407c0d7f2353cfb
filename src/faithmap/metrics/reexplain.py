"""Explaining again: the steps every metric that re-runs the explaining method shares.

Robustness (:mod:`.robustness`), relative stability (:mod:`.relative_stability`) and the
sanity checks (:mod:`.sanity`, :mod:`.mprt_variants`) compare the explanation given with new
explanations by the same method, of perturbed inputs or of a perturbed model. Each reads the
given maps (:func:`original_maps`), keeps the target they were made for
(:func:`explained_target`), re-explains without repeating the flat-map warning the original
explanation gave already (:func:`explain_quietly`) and checks that the new maps line up with
the old ones (:func:`check_same_shape`).

References
----------
Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018. Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the (In)fidelity and Sensitivity of
Explanations", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from faithmap.core.explanation import Explanation, attribution_map
from faithmap.core.method import Method, quiet_constant_maps
from faithmap.core.metric import TargetRule
from faithmap.core.model import Model
from faithmap.core.targets import TargetLike
from faithmap.errors import ShapeError

MethodLike = Method | str | None
"""The method to explain again with: an instance, a registered name, or ``None`` (the
explanation's own, rebuilt from its record by :func:`~faithmap.core.registry.method_of`)."""


def original_maps(owner: str, explanation: object, inputs: Tensor) -> Tensor:
    """The given explanation's maps, detached, after checking there is one per input.

    Raises
    ------
    ShapeError
        If the explanation and ``inputs`` hold different numbers of samples.
    """
    original = attribution_map(explanation).detach()
    if original.shape[0] != inputs.shape[0]:
        raise ShapeError(
            f"The explanation for {owner} has {original.shape[0]} samples but the inputs have "
            f"{inputs.shape[0]}. Pass the explanation of these inputs."
        )
    return original


def explained_target(explanation: object, target: TargetLike) -> tuple[TargetLike, TargetRule]:
    """The target to explain again, and the rule that chose it.

    The given ``target``; else the one the explanation was made for (``"explained"``); else
    ``None``, the predicted class (``"predicted"``).
    """
    if target is None and isinstance(explanation, Explanation) and explanation.target is not None:
        return explanation.target, "explained"
    return target, "predicted" if target is None else "given"


def explain_quietly(explainer: Method, model: Model, inputs: Tensor, target: TargetLike) -> Tensor:
    """``explainer``'s attributions of ``inputs``, without the flat-map warning.

    The original explanation warned already if its maps are flat; a re-run on perturbed inputs
    or a randomised model may well give flat maps, which is then a finding, not a misuse.
    """
    with quiet_constant_maps():
        return explainer.explain(model, inputs, target).attributions.detach()


def check_same_shape(maps: Tensor, expected: Sequence[int], explainer: Method) -> None:
    """Raise :class:`~faithmap.errors.ShapeError` unless the new maps have the old shape."""
    if tuple(maps.shape) != tuple(expected):
        raise ShapeError(
            f"The method {explainer.name!r} returned maps of shape {tuple(maps.shape)}, not the "
            f"original explanation's {tuple(expected)}. Pass the method that made the "
            "explanation with method=."
        )
