"""Two repairs of the model-parameter randomisation test (MPRT), after Hedström et al. (2023).

* :func:`smooth_model_randomisation` (sMPRT): the explanations of the original and of each
  randomised model are denoised first, averaged over ``n_samples`` noisy copies of the input
  (Gaussian noise of standard deviation ``noise * (max(x) - min(x))`` per sample; the last
  copy is ``x`` itself, as in Quantus), and then compared by rank correlation as in
  :func:`~faithmap.metrics.sanity.model_randomisation`. The same noise serves every model, so
  the maps differ by the model only. Layers are randomised cumulatively, bottom-up by default
  (the paper's advice). Lower is better.
* :func:`efficient_model_randomisation` (eMPRT): no layer-by-layer comparison; the relative
  rise in complexity, ``(H(e_random) - H(e)) / H(e)``, from the original model to the fully
  randomised one, where ``H`` is the discrete entropy of a map's histogram (``n_bins`` equal
  bins between its smallest and largest value). A faithful explanation of a random model is
  noise, so higher is better.

Models are randomised as in :func:`~faithmap.metrics.sanity.model_randomisation`: a deep copy,
every module with its own parameters and ``reset_parameters`` re-initialised, layer ``j`` (top
first) from seed ``seed + j``; the user's model is never touched.

Differences from Quantus 0.6.0 (``SmoothMPRT``, ``EfficientMPRT``): Quantus re-seeds every
layer with the same ``seed + 1`` (so a one-layer model matches ``seed`` here with Quantus'
``seed - 1``); its sMPRT draws fresh noise for each model, calls ``quantus.explain`` rather than
the given explanation function, and its ``return_average_correlation`` also averages in the
similarity of two smoothed explanations of the original model; its eMPRT re-explains the
original model instead of reading the given explanation (the same for a deterministic method).

References
----------
Hedström, Weber, Lapuschkin, Höhne, "Sanity Checks Revisited: An Exploration to Repair the
Model Parameter Randomisation Test", XAI in Action workshop, NeurIPS 2023.
Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from faithmap.core.constraints import BOOLEAN, Interval, options
from faithmap.core.explanation import Explanation
from faithmap.core.method import Method
from faithmap.core.metric import MetricResult
from faithmap.core.model import Model
from faithmap.core.registry import register_metric
from faithmap.core.targets import TargetLike
from faithmap.metrics.draws import key_table, row_normal
from faithmap.metrics.parameters import REEXPLAIN_CONSTRAINTS
from faithmap.metrics.reexplain import check_same_shape, explain_quietly
from faithmap.metrics.sanity import (
    RANDOMISATION_CONSTRAINTS,
    RandomisationResult,
    randomisation_setup,
    randomised_stages,
)
from faithmap.metrics.similarity import Similarity, compare_maps

LayerOrder = Literal["bottom_up", "top_down"]


def smoothing_noise(inputs: Tensor, n_samples: int, seed: int) -> Tensor:
    """Standard normal draws ``(N, n_samples - 1, *inputs[0])`` that sMPRT scales and adds.

    Copy ``j < n_samples - 1`` of sample ``i`` is ``x_i + noise * (max x_i - min x_i) * z[i, j]``.
    Exposed so that the same noise can be handed to another implementation.
    """
    n, draws = inputs.shape[0], n_samples - 1
    keys = key_table(seed, n, draws, inputs.device).flatten()
    return row_normal(inputs.shape[1:], keys, inputs.dtype).view(n, draws, *inputs.shape[1:])


def _smoothed(
    explainer: Method, model: Model, inputs: Tensor, classes: Tensor, shifts: Tensor
) -> Tensor:
    """Mean of the explanations of ``inputs + shifts[:, j]`` for every ``j`` and of ``inputs``."""
    total = explain_quietly(explainer, model, inputs, classes).double()
    for draw in range(shifts.shape[1]):
        total += explain_quietly(explainer, model, inputs + shifts[:, draw], classes).double()
    return total / (shifts.shape[1] + 1)


@register_metric(
    "smooth_model_randomisation",
    constraints={
        **RANDOMISATION_CONSTRAINTS,
        "n_samples": [Interval(int, 1)],
        "noise": [Interval(float, 0.0)],
        "layer_order": [options(("bottom_up", "top_down"))],
    },
    higher_is_better=False,
)
def smooth_model_randomisation(
    model: Model | nn.Module,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    method: Method | str | None = None,
    n_samples: int = 50,
    noise: float = 0.1,
    layer_order: LayerOrder = "bottom_up",
    similarity: Similarity = "spearman",
    absolute: bool = True,
    summary: Literal["mean", "last"] = "mean",
    target: TargetLike = None,
    seed: int = 0,
) -> RandomisationResult:
    """Smooth MPRT: the randomisation test on explanations denoised by input noise.

    Parameters
    ----------
    model : Model or nn.Module
        The model explained (a deep copy is randomised).
    inputs : Tensor
        The inputs explained.
    explanation : Explanation or Tensor
        Names the method (and, unless ``target`` is given, the target); its maps are not
        compared, the smoothed maps of the original model are.
    method : Method or str, optional
        The method to explain with (default: the explanation's, with its config).
    n_samples : int, default=50
        Explanations averaged per map: ``n_samples - 1`` noisy copies and the input itself
        (Quantus: 50).
    noise : float, default=0.1
        Noise standard deviation as a fraction of each sample's value range (Quantus: 0.1).
    layer_order : {"bottom_up", "top_down"}, default="bottom_up"
        Randomise cumulatively from the input layer up (Hedström et al.), or from the output
        layer down (Adebayo et al.).
    similarity : {"spearman", "ssim"}, default="spearman"
    absolute : bool, default=True
        Compare ``|a|`` (Quantus' default for sMPRT).
    summary : {"mean", "last"}, default="mean"
        ``values``: the mean similarity over the stages, or the last (the fully random model).
    target : None, int or tensor of ints
        Default: the explanation's target, else the original model's predicted class.
    seed : int, default=0
        Seed of the noise and of the layers' re-initialisation.

    Returns
    -------
    RandomisationResult
        ``values`` ``(N,)`` (lower is better), ``similarities`` ``(N, L)`` in the order the
        layers were randomised, and ``layers`` in that order. Cost: ``n_samples`` explanations
        per sample for each of the ``L + 1`` models.

    References
    ----------
    Hedström et al., "Sanity Checks Revisited: An Exploration to Repair the Model Parameter
    Randomisation Test", 2023.
    """
    owner = "smooth_model_randomisation"
    setup = randomisation_setup(owner, model, inputs, explanation, method, target)
    explainer, classes, given = setup.explainer, setup.classes, setup.original
    wrapped, twin = setup.model, setup.twin
    with wrapped.ledger.track() as spent_original:
        x = setup.inputs.to(wrapped.device or setup.inputs.device)
        spread = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * x.dim())
        shifts = noise * spread * smoothing_noise(x, n_samples, seed)
        original = _smoothed(explainer, wrapped, x, classes, shifts)
    check_same_shape(original, given.shape, explainer)
    stages, names = [], []
    with twin.ledger.track() as spent:
        for name in randomised_stages(setup.layers, seed, bottom_up=layer_order == "bottom_up"):
            maps = _smoothed(explainer, twin, x, classes, shifts)
            check_same_shape(maps, given.shape, explainer)
            stages.append(compare_maps(original, maps, similarity, absolute))
            names.append(name)
    similarities = torch.stack(stages, 1).float().to(given.device)
    values = similarities.mean(1) if summary == "mean" else similarities[:, -1]
    return RandomisationResult(
        metric=owner,
        values=values,
        higher_is_better=False,
        choices=setup.choices(
            seed,
            order="cascading",
            layer_order=layer_order,
            n_samples=n_samples,
            noise=noise,
            similarity=similarity,
            absolute=absolute,
            summary=summary,
        ),
        cost=setup.cost + spent_original.cost + spent.cost,
        target=classes.to(given.device),
        similarities=similarities,
        layers=tuple(names),
    )


def histogram_entropy(maps: Tensor, n_bins: int) -> Tensor:
    """Discrete entropy (nats) of each map's histogram, ``(N,)``.

    ``n_bins`` equal bins from the map's smallest to its largest value, the last bin closed
    (numpy's ``histogram``; a constant map falls in one bin and has entropy 0).
    """
    flat = maps.flatten(1).double()
    low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    flat_map = low == high
    low, high = torch.where(flat_map, low - 0.5, low), torch.where(flat_map, high + 0.5, high)
    steps = torch.arange(n_bins + 1, device=flat.device, dtype=torch.float64)
    edges = low + steps * ((high - low) / n_bins)
    edges[:, -1:] = high
    index = ((flat - low) * (n_bins / (high - low))).long().clamp(0, n_bins - 1)
    # values a rounding step put on the wrong side of an edge move back, as numpy does
    index = index - (flat < edges.gather(1, index)).long()
    index = index + ((flat >= edges.gather(1, index + 1)) & (index != n_bins - 1)).long()
    counts = torch.zeros(flat.shape[0], n_bins, device=flat.device, dtype=torch.float64)
    counts.scatter_add_(1, index, torch.ones_like(flat))
    shares = counts / flat.shape[1]
    return -(shares * torch.where(shares > 0, shares.log(), 0.0)).sum(1)


@dataclass(frozen=True, kw_only=True)
class EfficientRandomisationResult(MetricResult):
    """The relative rise in complexity from the original to the fully randomised model.

    Attributes
    ----------
    original_entropy, random_entropy : Tensor
        ``(N,)`` the discrete entropy of each sample's map before and after randomisation.
    layers : tuple of str
        The layers randomised (all of them), top first.
    """

    original_entropy: Tensor
    random_entropy: Tensor
    layers: tuple[str, ...]


@register_metric(
    "efficient_model_randomisation",
    constraints={**REEXPLAIN_CONSTRAINTS, "n_bins": [Interval(int, 1)], "absolute": [BOOLEAN]},
    higher_is_better=True,
    constant_model=-1.0,  # the random twin ignores its input too: its maps are flat, H = 0
)
def efficient_model_randomisation(
    model: Model | nn.Module,
    inputs: Tensor,
    explanation: Explanation | Tensor,
    *,
    method: Method | str | None = None,
    n_bins: int = 100,
    absolute: bool = False,
    target: TargetLike = None,
    seed: int = 0,
) -> EfficientRandomisationResult:
    """Efficient MPRT: ``(H(e_random) - H(e)) / H(e)`` with ``H`` a histogram's entropy.

    ``e`` is the explanation given; ``e_random`` explains the same target classes on a copy of
    the model with every layer re-initialised. Higher is better (the explanation follows the
    model into noise). A constant original map has ``H(e) = 0``: its value is ``+inf`` if the
    random map is not constant, NaN if it is (0 / 0). Meant for maps with many more values
    than ``n_bins``: a map of few distinct values puts each in its own bin whatever the
    model, so both entropies are ``log(size)`` and the value is 0.

    Parameters
    ----------
    model : Model or nn.Module
        The model explained (a deep copy is randomised).
    inputs : Tensor
        The inputs explained.
    explanation : Explanation or Tensor
        ``e``; a raw tensor needs ``method``.
    method : Method or str, optional
        The method to explain the random model with (default: the explanation's).
    n_bins : int, default=100
        Histogram bins per map (Quantus' default).
    absolute : bool, default=False
        Histogram ``|a|`` instead of the signed maps.
    target : None, int or tensor of ints
        Default: the explanation's target, else the original model's predicted class.
    seed : int, default=0
        Layer ``j`` (top first) is re-initialised from ``seed + j``.

    Returns
    -------
    EfficientRandomisationResult
        ``values`` ``(N,)``, both entropies and the layers. Cost: one explanation per sample.

    References
    ----------
    Hedström et al., "Sanity Checks Revisited: An Exploration to Repair the Model Parameter
    Randomisation Test", 2023.
    """
    owner = "efficient_model_randomisation"
    setup = randomisation_setup(owner, model, inputs, explanation, method, target)
    original, twin = setup.original, setup.twin
    for _ in randomised_stages(setup.layers, seed):
        pass  # cascading: every layer ends randomised
    with twin.ledger.track() as spent:
        x = setup.inputs.to(twin.device or setup.inputs.device)
        maps = explain_quietly(setup.explainer, twin, x, setup.classes)
    check_same_shape(maps, original.shape, setup.explainer)
    home = original.device
    before = histogram_entropy(original.abs() if absolute else original, n_bins)
    after = histogram_entropy(maps.abs() if absolute else maps, n_bins).to(home)
    return EfficientRandomisationResult(
        metric=owner,
        values=((after - before) / before).float(),
        higher_is_better=True,
        choices=setup.choices(
            seed, n_bins=n_bins, absolute=absolute, complexity="histogram_entropy"
        ),
        cost=setup.cost + spent.cost,
        target=setup.classes.to(home),
        original_entropy=before.float(),
        random_entropy=after.float(),
        layers=tuple(name for name, _ in setup.layers),
    )
