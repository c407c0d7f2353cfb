"""Sanity checks: similarity functions against scipy/scikit-image, randomisation oracles."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal, cast

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity
from torch import Tensor, nn

import faithmap
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.targets import Target
from faithmap.errors import ConstantMapWarning, InvalidParameterError, ModelError
from faithmap.metrics import model_randomisation, random_logit
from faithmap.metrics.similarity import average_ranks, spearman, ssim


@dataclass(frozen=True, kw_only=True)
class InputMap(Method):
    """An 'explanation' that ignores the model: the input summed over channels."""

    name: ClassVar[str] = "input_map"

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs.sum(1, keepdim=True)


def linear_net(side: int = 12, classes: int = 3, channels: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, classes))


def signed_saliency(model: nn.Module | Model, x: Tensor, target: Tensor) -> faithmap.Explanation:
    return faithmap.explain(
        model, x, method="saliency", target=target, absolute=False, reduce="sum"
    )


def inputs(n: int = 4, side: int = 12, channels: int = 1) -> Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(7))


# ------------------------------------------------------------------ similarity functions
def test_average_ranks_match_scipy_rankdata_with_ties() -> None:
    values = torch.randint(0, 5, (3, 40), generator=torch.Generator().manual_seed(0)).double()
    expected = np.stack([scipy.stats.rankdata(row) - 1 for row in values.numpy()])
    torch.testing.assert_close(average_ranks(values), torch.tensor(expected))


def test_spearman_matches_scipy_with_ties() -> None:
    generator = torch.Generator().manual_seed(1)
    a = torch.randint(0, 6, (4, 1, 7, 7), generator=generator).float()
    b = a + torch.randint(0, 4, (4, 1, 7, 7), generator=generator).float()
    expected = [
        scipy.stats.spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(a, b, strict=True)
    ]
    torch.testing.assert_close(spearman(a, b), torch.tensor(expected, dtype=torch.float64))


def test_ssim_matches_scikit_image() -> None:
    generator = torch.Generator().manual_seed(2)
    a = torch.rand(3, 2, 16, 13, generator=generator)
    b = (a + 0.3 * torch.rand(3, 2, 16, 13, generator=generator)).clamp(0, 1)
    expected = [
        structural_similarity(  # type: ignore[no-untyped-call]
            x.numpy(), y.numpy(), gaussian_weights=True, data_range=1.0, channel_axis=0
        )
        for x, y in zip(a, b, strict=True)
    ]
    torch.testing.assert_close(
        ssim(a, b, data_range=1.0), torch.tensor(expected, dtype=torch.float64)
    )
    torch.testing.assert_close(ssim(a, a, data_range=1.0), torch.ones(3, dtype=torch.float64))


# ------------------------------------------------------------------ model randomisation
@pytest.mark.parametrize("order", ["cascading", "independent"])
@pytest.mark.parametrize("similarity", ["spearman", "ssim"])
def test_an_explanation_that_ignores_the_model_keeps_similarity_one(
    order: Literal["cascading", "independent"], similarity: Literal["spearman", "ssim"]
) -> None:
    x = inputs()
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.ReLU(), nn.Linear(8, 3))
    explanation = InputMap().explain(net, x, torch.zeros(4, dtype=torch.long))
    result = model_randomisation(
        net, x, explanation, method=InputMap(), order=order, similarity=similarity
    )
    torch.testing.assert_close(result.similarities, torch.ones(4, 2))
    torch.testing.assert_close(result.values, torch.ones(4))
    assert result.layers == ("3", "1") and not result.higher_is_better


@pytest.mark.parametrize("absolute", [False, True])
def test_linear_model_oracle(absolute: bool) -> None:
    # Saliency of a linear model is its weight row: after re-initialising the layer from the
    # seed, the similarity is Spearman(W[c], W'[c]) on the channel-summed rows.
    x = inputs()
    net = linear_net()
    target = torch.tensor([0, 1, 2, 1])
    explanation = signed_saliency(net, x, target)
    result = model_randomisation(net, x, explanation, absolute=absolute, seed=11)
    layer = cast(nn.Linear, net[1])
    fresh = copy.deepcopy(layer)
    torch.manual_seed(11)
    fresh.reset_parameters()
    old, new = layer.weight.detach(), fresh.weight.detach()
    if absolute:
        old, new = old.abs(), new.abs()
    expected = [scipy.stats.spearmanr(old[c], new[c]).statistic for c in target.tolist()]
    torch.testing.assert_close(result.values, torch.tensor(expected, dtype=torch.float32))
    assert result.layers == ("1",)
    assert result.choices["absolute"] is absolute and result.choices["method"] == "saliency"


def manual_stage(
    net: nn.Sequential, layers: list[tuple[int, int]], x: Tensor, target: Tensor
) -> Tensor:
    """Saliency of a copy of ``net`` with the given (layer index, seed) re-initialised."""
    twin = copy.deepcopy(net)
    for index, seed in layers:
        torch.manual_seed(seed)
        cast(nn.Linear, twin[index]).reset_parameters()
    return signed_saliency(twin, x, target).attributions


def test_cascading_and_independent_orders_against_manual_copies() -> None:
    x = inputs(3)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 16), nn.Tanh(), nn.Linear(16, 3))
    target = torch.tensor([2, 0, 1])
    explanation = signed_saliency(net, x, target)
    original = explanation.attributions
    cascading = model_randomisation(net, x, explanation, order="cascading", seed=5)
    independent = model_randomisation(net, x, explanation, order="independent", seed=5)
    top = manual_stage(net, [(3, 5)], x, target)
    both = manual_stage(net, [(3, 5), (1, 6)], x, target)
    bottom = manual_stage(net, [(1, 6)], x, target)

    def rho(maps: Tensor) -> list[float]:
        return [
            scipy.stats.spearmanr(a.flatten(), b.flatten()).statistic
            for a, b in zip(original, maps, strict=True)
        ]

    expected_cascading = torch.tensor([rho(top), rho(both)]).T.float()
    expected_independent = torch.tensor([rho(top), rho(bottom)]).T.float()
    torch.testing.assert_close(cascading.similarities, expected_cascading)
    torch.testing.assert_close(independent.similarities, expected_independent)
    torch.testing.assert_close(cascading.values, expected_cascading.mean(1))
    last = model_randomisation(net, x, explanation, summary="last", seed=5)
    torch.testing.assert_close(last.values, expected_cascading[:, -1])


def test_the_users_model_is_left_unchanged(tiny_net: nn.Module, images: Tensor) -> None:
    tiny_net.train()
    before = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    flags = [(m, m.training) for m in tiny_net.modules()]
    grads = [p.requires_grad for p in tiny_net.parameters()]
    model = Model(tiny_net, batch_size=8)
    explanation = faithmap.explain(model, images, method="saliency")
    result = model_randomisation(model, images, explanation)
    after = tiny_net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training == flag for m, flag in flags)
    assert grads == [p.requires_grad for p in tiny_net.parameters()]
    assert result.layers == ("head", "features.3", "features.1", "features.0")
    # Saliency of a randomised CNN no longer ranks pixels as the trained one did.
    assert float(result.similarities[:, -1].mean()) < 0.9


def test_cost_counts_every_reexplanation_and_same_seed_same_value(
    tiny_net: nn.Module, images: Tensor
) -> None:
    model = Model(tiny_net, batch_size=8)
    explanation = faithmap.explain(model, images, method="saliency")
    rng_state = torch.get_rng_state()
    first = model_randomisation(model, images, explanation, seed=3)
    assert torch.equal(rng_state, torch.get_rng_state())  # the global generator is untouched
    again = model_randomisation(model, images, explanation, seed=3)
    other = model_randomisation(model, images, explanation, seed=4)
    torch.testing.assert_close(first.similarities, again.similarities)
    assert not torch.equal(first.similarities, other.similarities)
    n, stages = images.shape[0], len(first.layers)
    assert (first.cost.forward, first.cost.backward) == (n * stages, n * stages)
    assert first.target is not None and explanation.target is not None
    assert torch.equal(first.target, explanation.target)


def test_batch_size_invariance(tiny_net: nn.Module, images: Tensor) -> None:
    explanation = faithmap.explain(Model(tiny_net, batch_size=5), images, method="saliency")
    whole = model_randomisation(Model(tiny_net, batch_size=5), images, explanation)
    small = model_randomisation(Model(tiny_net, batch_size=2), images, explanation)
    torch.testing.assert_close(whole.similarities, small.similarities, rtol=1e-4, atol=1e-5)


def test_raw_tensors_need_a_method_and_callables_are_refused() -> None:
    x = inputs(2)
    net = linear_net()
    maps = signed_saliency(net, x, torch.tensor([0, 1])).attributions
    with pytest.raises(InvalidParameterError, match="method='saliency'"):
        model_randomisation(net, x, maps)
    result = model_randomisation(net, x, maps, method="saliency", target=torch.tensor([0, 1]))
    assert result.choices["target"] == "given" and result.values.shape == (2,)
    with pytest.raises(ModelError, match=r"nn\.Module"):
        model_randomisation(lambda t: net(t), x, maps, method="saliency")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'order' parameter"):
        model_randomisation(net, x, maps, method="saliency", order="bottom_up")  # type: ignore[arg-type]


# ------------------------------------------------------------------ random logit
def test_random_logit_on_a_linear_model() -> None:
    x = inputs(6)
    net = linear_net(classes=5)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    explanation = signed_saliency(net, x, target)
    result = random_logit(net, x, explanation, similarity="spearman", seed=9)
    assert not torch.equal(result.other, target) and bool((result.other != target).all())
    weights = cast(nn.Linear, net[1]).weight.detach()
    expected = [
        scipy.stats.spearmanr(weights[c], weights[o]).statistic
        for c, o in zip(target.tolist(), result.other.tolist(), strict=True)
    ]
    torch.testing.assert_close(result.values, torch.tensor(expected, dtype=torch.float32))
    assert (result.cost.forward, result.cost.backward) == (6, 6)
    again = random_logit(net, x, explanation, similarity="spearman", seed=9)
    assert torch.equal(again.other, result.other) and torch.equal(again.values, result.values)


def test_random_logit_draws_every_other_class_uniformly() -> None:
    x = torch.rand(600, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    net = linear_net(classes=4)
    target = torch.full((600,), 2)
    result = random_logit(net, x, InputMap().explain(net, x, target), method=InputMap(), seed=1)
    counts = torch.bincount(result.other, minlength=4)
    assert counts[2] == 0 and bool((counts[[0, 1, 3]] > 150).all())
    # An explanation that ignores the class is identical for any class: similarity 1.
    torch.testing.assert_close(result.values, torch.ones(600))


def test_random_logit_needs_two_classes() -> None:
    x = inputs(2)
    net = linear_net(classes=1)
    with pytest.raises(InvalidParameterError, match="at least 2 outputs"):
        random_logit(net, x, signed_saliency(net, x, torch.tensor([0, 0])))


def test_a_model_that_ignores_its_input_has_no_ranking_to_compare() -> None:
    # Its saliency is zero everywhere: Spearman is undefined (NaN), never a spurious 1 or 0.
    x = inputs(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(144, 3))
    with torch.no_grad():
        cast(nn.Linear, net[1]).weight.zero_()
    with pytest.warns(ConstantMapWarning, match="saliency returned an all-zero map"):
        explanation = signed_saliency(net, x, torch.tensor([0, 1]))
    assert not explanation.attributions.any()
    result = model_randomisation(net, x, explanation)
    assert bool(result.values.isnan().all())
