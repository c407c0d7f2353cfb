"""Sanity checks: does the explanation change when the model or the explained class does?

Both tests re-explain with the explanation's own method (``Explanation.method`` and
``Explanation.config``, or ``method=``) and compare the new maps with the given ones, per
sample, by Spearman rank correlation (average ranks for ties) or SSIM. A high similarity means
the explanation ignores what it should depend on, so lower is better. An explanation that
ignores the model (the input itself, an edge detector) keeps similarity 1.

References
----------
Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for Saliency Maps",
NeurIPS 2018 (model-parameter randomisation, cascading and independent).
Sixt, Granz, Landgraf, "When Explanations Lie: Why Many Modified BP Attributions Fail",
ICML 2020 (random-logit test).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from faithmap.core.constraints import BOOLEAN, Constraints, options
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.metric import MetricResult, TargetRule
from faithmap.core.model import Model, ModelLike
from faithmap.core.registry import method_of, register_metric
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_inputs
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.metrics.parameters import REEXPLAIN_CONSTRAINTS
from faithmap.metrics.reexplain import (
    check_same_shape,
    explain_quietly,
    explained_target,
    original_maps,
)
from faithmap.metrics.similarity import SIMILARITIES, Similarity, compare_maps, fits_ssim


@dataclass(frozen=True, kw_only=True)
class RandomisationResult(MetricResult):
    """Similarity of each sample's explanation before and after randomising each layer.

    Attributes
    ----------
    similarities : Tensor
        ``(N, L)`` similarity after each randomisation stage, top layer first.
    layers : tuple of str
        The ``L`` layers randomised, top first (module names in the model).

    The other attributes are those of :class:`MetricResult`; ``values`` summarise each row of
    ``similarities`` (their mean, or the last stage, as ``choices["summary"]`` says).
    """

    similarities: Tensor
    layers: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RandomLogitResult(MetricResult):
    """Similarity between the explanation of the target and of a random other class.

    Attributes
    ----------
    other : Tensor
        ``(N,)`` the random other class explained for each sample.
    """

    other: Tensor


def explained_classes(
    owner: str, wrapped: Model, inputs: Tensor, explanation: object, target: TargetLike
) -> tuple[Tensor, Tensor, Tensor, TargetRule]:
    """The set-up of a sanity check: checked inputs, original maps, target classes, target rule.

    The classes are those the explanation was made for (else the given or predicted ones),
    fixed for every re-explanation; a callable target is refused, as the checks compare
    explanations of classes.
    """
    checked = check_inputs(inputs, owner).detach()
    original = original_maps(owner, explanation, checked)
    target, rule = explained_target(explanation, target)
    resolved = wrapped.target(checked.to(wrapped.device or checked.device), target)
    if resolved.classes is None:
        raise InvalidParameterError(
            f"{owner} compares explanations of class targets, so a callable target cannot be "
            "used. Pass class indices, or None for the predicted class."
        )
    return checked, original, resolved.classes, rule


def randomisable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that own parameters and can re-initialise them, top (output) layer first."""
    found = [
        (name, sub)
        for name, sub in module.named_modules()
        if callable(getattr(sub, "reset_parameters", None))
        and any(True for _ in sub.parameters(recurse=False))
    ]
    return found[::-1]


@dataclass(frozen=True)
class RandomisationSetup:
    """What a model-randomisation test starts from (:func:`randomisation_setup`).

    Attributes
    ----------
    explainer : Method
        The method to explain the randomised models with.
    model : Model
        The user's model, wrapped (never randomised).
    twin : Model
        A deep copy of it, whose ``layers`` are re-initialised.
    layers : list of (str, nn.Module)
        The twin's :func:`randomisable_layers`, top first.
    inputs, original, classes, rule
        As :func:`explained_classes` gives them.
    cost : Cost
        What settling the target on the original model spent.
    """

    explainer: Method
    model: Model
    twin: Model
    layers: list[tuple[str, nn.Module]]
    inputs: Tensor
    original: Tensor
    classes: Tensor
    rule: TargetRule
    cost: Cost

    def choices(self, seed: int, **choices: Any) -> dict[str, Any]:
        """A result's choices: the method, then ``choices``, then target rule, seed and reset."""
        return {
            "method": self.explainer.name,
            **choices,
            "target": self.rule,
            "seed": seed,
            "reset": "reset_parameters",
        }


def randomisation_setup(
    owner: str,
    model: Model | nn.Module,
    inputs: Tensor,
    explanation: object,
    method: Method | str | None,
    target: TargetLike,
) -> RandomisationSetup:
    """The shared set-up of the model-randomisation tests (MPRT, sMPRT, eMPRT).

    Raises
    ------
    ModelError
        If the model is not an ``nn.Module``, or has no layer :func:`randomisable_layers` finds.
    """
    explainer = method_of(explanation, method, owner)
    wrapped = Model.wrap(model)
    module = wrapped.module
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{owner} re-initialises the model's layers, so it needs a torch nn.Module. Got "
            f"{type(module).__name__} instead."
        )
    clone = copy.deepcopy(module)
    layers = randomisable_layers(clone)
    if not layers:
        raise ModelError(
            f"{owner} found no layer to randomise: no module has parameters and a "
            "reset_parameters() method."
        )
    with wrapped.ledger.track() as spent:
        checked, original, classes, rule = explained_classes(
            owner, wrapped, inputs, explanation, target
        )
    return RandomisationSetup(
        explainer=explainer,
        model=wrapped,
        twin=wrapped.like(clone),
        layers=layers,
        inputs=checked,
        original=original,
        classes=classes,
        rule=rule,
        cost=spent.cost,
    )


def reset_layer(layer: nn.Module, seed: int) -> None:
    """Re-initialise ``layer`` with its own initialiser, drawing from ``seed`` only."""
    devices = sorted({p.device.index or 0 for p in layer.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.no_grad():
            layer.reset_parameters()  # type: ignore[operator]


def randomised_stages(
    layers: list[tuple[str, nn.Module]],
    seed: int,
    *,
    cascading: bool = True,
    bottom_up: bool = False,
) -> Iterator[str]:
    """Randomise ``layers`` (top first) one stage at a time, yielding each stage's layer name.

    Layer ``j`` (top first) is re-initialised from ``seed + j`` whatever the order; stages go
    top-down, or bottom-up with ``bottom_up``. ``cascading`` keeps earlier stages randomised;
    otherwise each layer gets its trained parameters back once the caller moves on.
    """
    indexed = list(enumerate(layers))
    if bottom_up:
        indexed.reverse()
    for index, (name, layer) in indexed:
        saved = None if cascading else {k: v.clone() for k, v in layer.state_dict().items()}
        reset_layer(layer, seed + index)
        yield name
        if saved is not None:
            layer.load_state_dict(saved)


RANDOMISATION_CONSTRAINTS: Constraints = {
    **REEXPLAIN_CONSTRAINTS,
    "similarity": [options(SIMILARITIES)],
    "absolute": [BOOLEAN],
    "summary": [options(("mean", "last"))],
}
"""The parameters of the layer-by-layer randomisation tests (MPRT and smooth MPRT)."""


@register_metric(
    "model_randomisation",
    constraints={**RANDOMISATION_CONSTRAINTS, "order": [options(("cascading", "independent"))]},
    higher_is_better=False,
)
def model_randomisation(
    model: Model | nn.Module,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    method: Method | str | None = None,
    order: Literal["cascading", "independent"] = "cascading",
    similarity: Similarity = "spearman",
    absolute: bool = False,
    summary: Literal["mean", "last"] = "mean",
    target: TargetLike = None,
    seed: int = 0,
) -> RandomisationResult:
    """Model-parameter randomisation test: similarity after re-initialising layers.

    A deep copy of the model is randomised (the user's model is never touched), layer by layer
    from the top (output) down. ``"cascading"`` keeps earlier layers randomised, so stage ``k``
    has the top ``k + 1`` layers random; ``"independent"`` randomises one layer at a time. Each
    stage re-explains the same target classes with the same method and compares the maps with
    the original ones. A layer is a module with its own parameters and a ``reset_parameters``
    method (linear, convolution, normalisation: batch norm's running statistics are reset too);
    layer ``j`` (top first) is re-initialised from seed ``seed + j`` in both orders. Parameters of
    modules without ``reset_parameters`` (attention's packed input projection) stay as trained.

    Parameters
    ----------
    model : Model or nn.Module
        The model explained (an ``nn.Module`` inside: its parameters are re-initialised).
    inputs : Tensor
        The inputs explained.
    explanation : Explanation or Tensor
        The original explanation; a raw tensor needs ``method``.
    method : Method or str, optional
        The method to re-explain with (default: the explanation's, with its config).
    order : {"cascading", "independent"}, default="cascading"
    similarity : {"spearman", "ssim"}, default="spearman"
        Spearman rank correlation (average ranks for ties), or SSIM of the maps scaled by their
        largest magnitude (scikit-image's Gaussian SSIM, maps of at least 11 x 11).
    absolute : bool, default=False
        Compare ``|a|`` instead of the signed maps (Adebayo et al. report both; absolute values
        can hide a failure: IG keeps rank correlation 0.99 on MNIST).
    summary : {"mean", "last"}, default="mean"
        ``values``: the mean similarity over the stages, or the last stage (for cascading,
        the fully random model).
    target : None, int or tensor of ints
        Default: the explanation's target, else the original model's predicted class.
    seed : int, default=0

    Returns
    -------
    RandomisationResult
        ``values`` ``(N,)`` (lower is better), ``similarities`` ``(N, L)`` and ``layers``.

    References
    ----------
    Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    owner = "model_randomisation"
    setup = randomisation_setup(owner, model, inputs, explanation, method, target)
    original, twin = setup.original, setup.twin
    stages = []
    with twin.ledger.track() as spent:
        for _ in randomised_stages(setup.layers, seed, cascading=order == "cascading"):
            maps = explain_quietly(setup.explainer, twin, setup.inputs, setup.classes)
            check_same_shape(maps, original.shape, setup.explainer)
            stages.append(compare_maps(original, maps.to(original.device), similarity, absolute))
    similarities = torch.stack(stages, 1).float()
    values = similarities.mean(1) if summary == "mean" else similarities[:, -1]
    return RandomisationResult(
        metric=owner,
        values=values,
        higher_is_better=False,
        choices=setup.choices(
            seed,
            order=order,
            layer_order="top_down",
            similarity=similarity,
            absolute=absolute,
            summary=summary,
        ),
        cost=setup.cost + spent.cost,
        target=setup.classes.to(original.device),
        similarities=similarities,
        layers=tuple(name for name, _ in setup.layers),
    )


@register_metric(
    "random_logit",
    constraints={
        **REEXPLAIN_CONSTRAINTS,
        "similarity": [None, options(SIMILARITIES)],
        "absolute": [BOOLEAN],
    },
    higher_is_better=False,
)
def random_logit(
    model: ModelLike,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    method: Method | str | None = None,
    similarity: Similarity | None = None,
    absolute: bool = False,
    target: TargetLike = None,
    seed: int = 0,
) -> RandomLogitResult:
    """Random-logit test: similarity to the explanation of a random other class.

    For each sample a class other than its target is drawn uniformly (from ``seed``) and
    explained with the same method on the same model; a class-sensitive explanation differs.

    Parameters
    ----------
    model, inputs
        The model and the inputs explained.
    explanation : Explanation or Tensor
        The original explanation; a raw tensor needs ``method``.
    method : Method or str, optional
        The method to re-explain with (default: the explanation's, with its config).
    similarity : {"ssim", "spearman"} or None, default=None
        As in :func:`model_randomisation`. ``None``: SSIM (Quantus' default) for image maps of at
        least 11 x 11 pixels (its Gaussian window), Spearman for smaller maps and other inputs;
        ``choices`` records the one used.
    absolute : bool, default=False
        Compare ``|a|`` instead of the signed maps.
    target : None, int or tensor of ints
        Default: the explanation's target, else the predicted class.
    seed : int, default=0
        Seed of the random classes.

    Returns
    -------
    RandomLogitResult
        ``values`` ``(N,)`` (lower is better) and the random classes ``other``.

    References
    ----------
    Sixt, Granz, Landgraf, "When Explanations Lie: Why Many Modified BP Attributions Fail",
    ICML 2020.
    """
    owner = "random_logit"
    explainer = method_of(explanation, method, owner)
    wrapped = Model.wrap(model)
    with wrapped.ledger.track() as spent:
        checked, original, classes, rule = explained_classes(
            owner, wrapped, inputs, explanation, target
        )
        if similarity is None:
            similarity = "ssim" if fits_ssim(original) else "spearman"
        num_classes = wrapped.num_outputs or 0
        if num_classes < 2:
            raise InvalidParameterError(
                f"random_logit needs a model with at least 2 outputs. Got {num_classes}."
            )
        generator = torch.Generator().manual_seed(seed)
        draw = torch.randint(0, num_classes - 1, (checked.shape[0],), generator=generator)
        draw = draw.to(classes.device)
        other = draw + (draw >= classes).long()
        maps = explain_quietly(explainer, wrapped, checked, other)
    check_same_shape(maps, original.shape, explainer)
    home = original.device
    return RandomLogitResult(
        metric=owner,
        values=compare_maps(original, maps.to(home), similarity, absolute).float(),
        higher_is_better=False,
        choices={
            "method": explainer.name,
            "similarity": similarity,
            "absolute": absolute,
            "target": rule,
            "seed": seed,
        },
        cost=spent.cost,
        target=classes.to(home),
        other=other.to(home),
    )
