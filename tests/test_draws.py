"""The counter-based draws of the metrics: a row's values depend on its coordinates only."""

from __future__ import annotations

import math

import torch

from faithmap.metrics.draws import (
    _first_distinct,
    key_table,
    row_bits,
    row_keys,
    row_normal,
    row_subsets,
    row_uniform,
)

CPU = torch.device("cpu")


def rows(n: int, index: int = 0, seed: int = 0) -> torch.Tensor:
    """The keys of rows (0, index) ... (n - 1, index)."""
    return row_keys(seed, torch.arange(n), torch.full((n,), index))


def test_a_row_does_not_depend_on_the_rows_beside_it() -> None:
    samples = torch.tensor([0, 0, 1, 5, 5])
    indices = torch.tensor([0, 3, 3, 1, 2])
    keys = row_keys(4, samples, indices)
    together = row_normal((2, 7, 7), keys, torch.float32)
    for b in range(5):
        alone = row_normal(
            (2, 7, 7), row_keys(4, samples[b : b + 1], indices[b : b + 1]), torch.float32
        )
        assert torch.equal(alone[0], together[b])
    other_seed = row_normal((2, 7, 7), row_keys(5, samples, indices), torch.float32)
    assert not torch.equal(other_seed, together)
    assert not torch.equal(together[0], together[1])  # (0, 0) and (0, 3) differ
    table = key_table(4, 6, 4, CPU)
    assert torch.equal(table[samples, indices], keys)
    assert len(set(table.flatten().tolist())) == 24


def test_normal_draws_have_unit_moments_and_no_correlation() -> None:
    draws = row_normal((4096,), rows(512), torch.float64)
    flat = draws.flatten()
    count = flat.numel()
    # mean and variance within 5 standard errors of 0 and 1
    assert abs(float(flat.mean())) < 5 / math.sqrt(count)
    assert abs(float(flat.var()) - 1) < 5 * math.sqrt(2 / count)
    # fourth moment of a normal is 3 (Box-Muller gets it right; a uniform sum would not)
    assert abs(float(flat.pow(4).mean()) - 3) < 0.1
    # neighbouring elements and neighbouring rows are uncorrelated
    within = torch.corrcoef(torch.stack([draws[:, :-1].flatten(), draws[:, 1:].flatten()]))[0, 1]
    across = torch.corrcoef(torch.stack([draws[:-1].flatten(), draws[1:].flatten()]))[0, 1]
    assert abs(float(within)) < 5 / math.sqrt(count)
    assert abs(float(across)) < 5 / math.sqrt(count)
    assert float(flat.abs().max()) < 6.0  # 24-bit uniforms cap a draw at 5.8


def test_uniform_draws_fill_the_open_interval_evenly() -> None:
    draws = row_uniform((1000,), rows(200, seed=3), torch.float32).flatten()
    assert float(draws.min()) > -1 and float(draws.max()) < 1
    counts = torch.histc(draws, bins=10, min=-1, max=1)
    expected = draws.numel() / 10
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 27.9  # the 0.999 quantile of chi-square with 9 degrees of freedom


def test_words_use_all_32_bits() -> None:
    bits = row_bits(rows(64), 1024).long() & 0xFFFFFFFF
    for bit in (0, 15, 31):
        share = float(((bits >> bit) & 1).double().mean())
        assert abs(share - 0.5) < 0.01


def test_subsets_of_some_units_are_distinct_present_and_uniform() -> None:
    n, units, size = 4000, 20, 5
    present = torch.ones(n, units, dtype=torch.bool)
    present[:, 3] = False  # an absent unit is never drawn
    chosen = row_subsets(rows(n, 2, seed=7), present, size, units)
    assert chosen.shape == (n, size)
    assert not bool((chosen == 3).any())
    assert all(len(set(row.tolist())) == size for row in chosen[:200])
    frequency = torch.bincount(chosen.flatten(), minlength=units).double() / n
    expected = size / (units - 1)
    others = torch.cat([frequency[:3], frequency[4:]])
    assert float((others - expected).abs().max()) < 5 * math.sqrt(expected / n)


def test_small_subsets_of_all_units_are_uniform_over_pairs_too() -> None:
    n, units, size = 20000, 40, 5  # 8 * size <= units: the first distinct of a few draws
    chosen = row_subsets(rows(n, 4, seed=1), None, size, units)
    assert all(len(set(row.tolist())) == size for row in chosen[:500])
    frequency = torch.bincount(chosen.flatten(), minlength=units).double() / n
    single = size / units
    assert float((frequency - single).abs().max()) < 5 * math.sqrt(single / n)
    together = torch.zeros(n, units, dtype=torch.bool).scatter_(1, chosen, True).double()
    pairs = (together.T @ together) / n  # how often units i and j are drawn together
    pair = size * (size - 1) / (units * (units - 1))
    off = pairs[~torch.eye(units, dtype=torch.bool)]
    assert float((off - pair).abs().max()) < 5 * math.sqrt(pair / n)


def test_first_distinct_draws_keep_draw_order_and_flag_short_rows() -> None:
    positions = torch.tensor([[3, 3, 5, 3, 7, 5, 9], [1, 1, 1, 1, 2, 1, 1]])
    chosen, complete = _first_distinct(positions, 3, 10)
    assert chosen[0].tolist() == [3, 5, 7]
    assert complete.tolist() == [True, False]


def test_subsets_can_take_every_present_unit() -> None:
    present = torch.tensor([[True, False, True, True, False]])
    chosen = row_subsets(rows(1), present, 3, 5)
    assert sorted(chosen[0].tolist()) == [0, 2, 3]
    assert sorted(row_subsets(rows(1), None, 5, 5)[0].tolist()) == [0, 1, 2, 3, 4]
