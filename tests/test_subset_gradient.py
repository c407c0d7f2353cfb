"""The gradient-guided search of subset selection: its costs, its limits, its estimates."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

import faithmap
from conftest import RegionSum
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.methods.subset.search import gradient_checks, gradient_greedy, greedy
from faithmap.testing import method_checks

CPU = torch.device("cpu")


class Pairwise:
    """A non-submodular set function ``f(S) = sum_i w_i + sum_{i<j in S} c_ij`` (random ``c`` of
    both signs) that counts the subsets it scores, with first-order estimates of its gains:
    ``exact`` (the true marginal gains) or the modular part ``w`` alone."""

    def __init__(self, images: int, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.weights = torch.rand(images, count, generator=generator, dtype=torch.float64)
        pairs = torch.randn(images, count, count, generator=generator, dtype=torch.float64)
        self.pairs = (pairs + pairs.transpose(1, 2)).triu(1) / 2
        self.rows = 0
        self.estimates = 0

    def value(self, samples: Tensor, keeps: Tensor) -> Tensor:
        kept = keeps.double()
        quadratic = torch.einsum("mi,mij,mj->m", kept, self.pairs[samples], kept)
        return (self.weights[samples] * kept).sum(1) + quadratic

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.rows += samples.shape[0]
        return self.value(samples, keeps)

    def exact(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.estimates += samples.shape[0]
        symmetric = self.pairs[samples] + self.pairs[samples].transpose(1, 2)
        return self.weights[samples] + torch.einsum("mij,mj->mi", symmetric, keeps.double())

    def modular(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.estimates += samples.shape[0]
        return self.weights[samples].clone()


def expected_cost(pool: int, count: int) -> tuple[int, int]:
    """(subsets scored, estimates) per image, from the search's schedule."""
    rows = estimates = 0
    for step in range(count - 1):
        size = gradient_checks(pool, step, count - step)
        rows += size
        estimates += size < count - step
    return rows, estimates


@pytest.mark.parametrize(("pool", "count"), [(1, 9), (6, 49), (12, 49), (6, 5), (100, 12)])
def test_the_search_costs_what_its_schedule_says(pool: int, count: int) -> None:
    function = Pairwise(2, count, 0)
    order = gradient_greedy(function, function.modular, 2, count, CPU, pool=pool)
    for row in order:
        assert sorted(row.tolist()) == list(range(count))
    rows, estimates = expected_cost(pool, count)
    assert (function.rows, function.estimates) == (2 * rows, 2 * estimates)


def test_at_49_regions_pool_6_scores_14_subsets_and_48_estimates() -> None:
    """6 + 3 + 2 + 1 + 1 + 1 exact subsets, an estimate at every step but the last."""
    assert expected_cost(6, 49) == (14, 48)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_pool_covering_every_candidate_is_plain_greedy(seed: int) -> None:
    """``pool >= R^2``: every step scores every candidate, so no estimate is needed."""
    count = 10
    function = Pairwise(3, count, seed)
    found = gradient_greedy(function, function.modular, 3, count, CPU, pool=count * count)
    assert torch.equal(found, greedy(Pairwise(3, count, seed), 3, count, CPU))
    assert function.estimates == 0
    assert function.rows == 3 * count * (count + 1) // 2 - 3  # the last region is not scored


@pytest.mark.parametrize("pool", [1, 3])
def test_exact_estimates_give_greedy_s_order_at_any_pool(pool: int) -> None:
    count = 12
    function = Pairwise(2, count, 5)
    found = gradient_greedy(function, function.exact, 2, count, CPU, pool=pool)
    assert torch.equal(found, greedy(Pairwise(2, count, 5), 2, count, CPU))


def test_the_search_is_deterministic_and_batch_independent() -> None:
    count = 15
    both = gradient_greedy(
        Pairwise(3, count, 4), Pairwise(3, count, 4).modular, 3, count, CPU, pool=4
    )
    again = gradient_greedy(
        Pairwise(3, count, 4), Pairwise(3, count, 4).modular, 3, count, CPU, pool=4
    )
    assert torch.equal(both, again)
    for image in range(3):
        alone = Pairwise(3, count, 4)
        alone.weights = alone.weights[image : image + 1]
        alone.pairs = alone.pairs[image : image + 1]
        single = gradient_greedy(alone, alone.modular, 1, count, CPU, pool=4)
        assert torch.equal(both[image], single[0])


def _linear_case() -> tuple[faithmap.Model, Tensor]:
    weights = torch.rand(16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = faithmap.Model(RegionSum(weights), outputs="probabilities")
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)).double() + 0.5
    return model, image


def test_on_a_linear_model_the_estimates_are_exact_so_the_search_is_greedy() -> None:
    """Consistency and collaboration of a model linear in its input: the first-order estimate
    is the marginal gain itself, so even ``pool=1`` finds plain greedy's order; every step but
    the last runs one forward and one backward pass per side."""
    model, image = _linear_case()
    params = {"regions": "patches:4", "confidence": 0.0}
    found = faithmap.explain(
        model, image, method="smdl", target=0, search="gradient", pool=1, **params
    )
    plain = faithmap.explain(model, image, method="smdl", target=0, search="greedy", **params)
    assert found.ranking is not None and plain.ranking is not None
    assert torch.equal(found.ranking, plain.ranking)
    assert found.cost.backward == 2 * 2 * 15
    assert found.config["search"] == "gradient"
    again = faithmap.explain(
        model, image, method="smdl", target=0, search="gradient", pool=1, **params
    )
    assert torch.equal(found.attributions, again.attributions)


def test_the_search_is_validated_and_needs_gradients() -> None:
    with pytest.raises(InvalidParameterError, match="pool"):
        faithmap.get_method("smdl", search="gradient", pool=0)
    model, image = _linear_case()
    module = model.module

    def black_box(x: Tensor) -> Tensor:
        with torch.no_grad():
            out: Tensor = module(x)
        return out

    with pytest.raises(ModelError, match="gradients"):
        faithmap.explain(
            faithmap.Model(black_box, outputs="probabilities"),
            image,
            method="smdl",
            target=0,
            search="gradient",
            regions="patches:4",
        )


PARAMS = {"regions": "slic:12", "search": "gradient", "effectiveness": 1.0}


@pytest.mark.parametrize("check", [name for name, _ in method_checks("smdl", PARAMS)])
def test_the_gradient_search_keeps_the_method_contract(check: str) -> None:
    """Shape, device, batch and sample independence, determinism ... with this search."""
    dict(method_checks("smdl", PARAMS))[check]()
