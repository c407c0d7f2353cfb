"""The greedy searches of subset selection, on set functions whose maximisers are known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from faithmap.methods.subset.objectives import effectiveness, incremental_effectiveness
from faithmap.methods.subset.search import (
    bidirectional_greedy,
    greedy,
    lazy_greedy,
    stochastic_greedy,
)

CPU = torch.device("cpu")


class Counting:
    """A set function over regions that counts how many subsets it was asked to score."""

    def __init__(self, values: Tensor) -> None:
        self.values, self.calls, self.rows = values, 0, 0

    def __call__(self, samples: Tensor, keeps: Tensor) -> Tensor:
        self.calls += 1
        self.rows += samples.shape[0]
        return self.value(samples, keeps)

    def value(self, samples: Tensor, keeps: Tensor) -> Tensor:
        return (self.values[samples] * keeps).sum(1)


class Coverage(Counting):
    """Facility location ``f(S) = sum_u max_{i in S} sim[u, i]``: monotone and submodular."""

    def value(self, samples: Tensor, keeps: Tensor) -> Tensor:
        sims = self.values[samples]  # (M, U, R)
        return sims.masked_fill(~keeps[:, None, :], 0.0).amax(2).sum(1)


def modular() -> tuple[Tensor, Tensor]:
    """Two images, 9 regions each, with distinct weights; the right order sorts them."""
    generator = torch.Generator().manual_seed(3)
    weights = torch.rand(2, 9, generator=generator, dtype=torch.float64)
    return weights, weights.argsort(1, descending=True)


def test_every_search_finds_the_order_of_a_modular_function() -> None:
    weights, expected = modular()
    runs = {
        "greedy": greedy(Counting(weights), 2, 9, CPU),
        "lazy": lazy_greedy(Counting(weights), 2, 9, CPU),
        "bidirectional": bidirectional_greedy(Counting(weights), 2, 9, CPU, pending=3),
        "stochastic, sample = all": stochastic_greedy(
            Counting(weights), 2, 9, CPU, epsilon=1e-9, generator=torch.Generator()
        ),
    }
    for name, order in runs.items():
        assert torch.equal(order, expected), name


def test_bidirectional_places_the_least_valuable_last_from_the_back() -> None:
    """With 9 regions and P = 3, three back steps run: the three lowest go last, in order."""
    weights, expected = modular()
    function = Counting(weights)
    order = bidirectional_greedy(function, 2, 9, CPU, pending=3)
    assert torch.equal(order[:, -3:], expected[:, -3:])
    # T = ceil((9 - 3) / 2) = 3 two-sided steps (9, 7, 5 front + 3 back candidates each),
    # then greedy on the r = 3 left (3 + 2 candidates; the last one is placed unscored).
    assert function.rows == 2 * ((9 + 3) + (7 + 3) + (5 + 3) + 3 + 2)


def test_lazy_greedy_equals_greedy_on_a_submodular_function_with_fewer_evaluations() -> None:
    generator = torch.Generator().manual_seed(0)
    sims = torch.rand(3, 30, 20, generator=generator, dtype=torch.float64) ** 4
    plain, lazy = Coverage(sims), Coverage(sims)
    assert torch.equal(lazy_greedy(lazy, 3, 20, CPU), greedy(plain, 3, 20, CPU))
    assert plain.rows == 3 * 20 * 21 // 2
    assert lazy.rows < plain.rows / 2


def test_greedy_scores_all_candidates_of_a_step_in_one_call() -> None:
    weights, _ = modular()
    function = Counting(weights)
    greedy(function, 2, 9, CPU)
    assert function.calls == 9
    assert function.rows == 2 * 9 * 10 // 2


def test_stochastic_greedy_depends_only_on_its_generator() -> None:
    generator = torch.Generator().manual_seed(0)
    sims = torch.rand(2, 30, 25, generator=generator, dtype=torch.float64) ** 4

    def run(seed: int) -> Tensor:
        return stochastic_greedy(
            Coverage(sims), 2, 25, CPU, epsilon=0.1, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    function = Coverage(sims)
    stochastic_greedy(function, 2, 25, CPU, epsilon=0.1, generator=torch.Generator())
    # ceil(ln 10) = 3 candidates per step until fewer remain: 23 steps of 3, then 2 and 1.
    assert function.rows == 2 * (23 * 3 + 2 + 1)


def _symmetric_distances(images: int, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    raw = torch.rand(images, count, count, generator=generator, dtype=torch.float64)
    distances = (raw + raw.transpose(1, 2)) / 2
    return distances * (1 - torch.eye(count, dtype=torch.float64))


def test_effectiveness_of_a_hand_made_subset() -> None:
    # Regions 0, 1, 2 at distances d01 = 0.2, d02 = 0.5, d12 = 0.4: nearest of 0 is 0.2, of 1 is
    # 0.2, of 2 is 0.4; region 3 is left out.
    distances = torch.tensor(
        [[0.0, 0.2, 0.5, 0.1], [0.2, 0.0, 0.4, 0.1], [0.5, 0.4, 0.0, 0.1], [0.1, 0.1, 0.1, 0.0]],
        dtype=torch.float64,
    )[None]
    keeps = torch.tensor([[True, True, True, False]])
    assert float(effectiveness(distances, keeps)[0]) == pytest.approx(0.8)
    only_one = torch.tensor([[False, False, True, False]])
    assert float(effectiveness(distances, only_one)[0]) == 0.0


@pytest.mark.parametrize("base_size", [0, 1, 5])
def test_incremental_effectiveness_equals_the_full_formula(base_size: int) -> None:
    count, images = 9, 3
    distances = _symmetric_distances(images, count, seed=base_size)
    generator = torch.Generator().manual_seed(10 + base_size)
    base = torch.zeros(images, count, dtype=torch.bool)
    for image in range(images):
        base[image, torch.randperm(count, generator=generator)[:base_size]] = True
    candidates = [(~base[i]).nonzero().squeeze(1) for i in range(images)]
    samples = torch.cat([torch.full((len(c),), i) for i, c in enumerate(candidates)])
    keeps = torch.cat([base[i].expand(len(c), count).clone() for i, c in enumerate(candidates)])
    keeps[torch.arange(keeps.shape[0]), torch.cat(candidates)] = True
    expected = effectiveness(distances[samples], keeps)
    torch.testing.assert_close(incremental_effectiveness(distances, samples, keeps), expected)


def test_incremental_effectiveness_falls_back_on_unrelated_subsets() -> None:
    count = 8
    distances = _symmetric_distances(2, count, seed=3)
    generator = torch.Generator().manual_seed(4)
    keeps = torch.rand(6, count, generator=generator) < 0.5
    samples = torch.tensor([0, 0, 0, 1, 1, 0])
    expected = effectiveness(distances[samples], keeps)
    torch.testing.assert_close(incremental_effectiveness(distances, samples, keeps), expected)
