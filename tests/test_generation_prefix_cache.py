"""The prefix cache's planning and what it saves: groups chosen by cost (checked against every
contiguous split), the coalition that removes nothing served by the clean run, and scoring passes
that stop before the last token (it predicts no step). Equality of the cached and uncached scores
is checked in ``tests/test_generation_methods.py``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import transformers
from torch import nn

import faithmap.generation.scoring as scoring
from faithmap.generation import explain_generation
from faithmap.generation.prefix_cache import CALL_POSITIONS, plan_groups


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def split_cost(starts: list[int], begins: list[int], length: int) -> int:
    stops = [*begins[1:], len(starts)]
    return sum(
        CALL_POSITIONS + (stop - begin) * (length - starts[begin])
        for begin, stop in zip(begins, stops, strict=True)
    )


def test_plan_groups_is_the_cheapest_contiguous_split() -> None:
    generator = torch.Generator().manual_seed(0)
    length = 40
    for _ in range(40):
        count = int(torch.randint(1, 9, (1,), generator=generator))
        starts = sorted(torch.randint(0, length, (count,), generator=generator).tolist())
        cheapest = min(
            split_cost(starts, [0, *cuts], length)
            for size in range(count)
            for cuts in itertools.combinations(range(1, count), size)
        )
        begins = plan_groups(starts, length)
        assert begins[0] == 0 and begins == sorted(set(begins))
        assert split_cost(starts, begins, length) == cheapest


def test_plan_groups_splits_only_where_it_pays() -> None:
    assert plan_groups([5, 5, 5], 24) == [0]  # one shared prefix: one call
    # one row from 0 and ten rows that share 20 positions: 64 + 24 + 40 < 32 + 11 * 24
    assert plan_groups([0, *[20] * 10], 24) == [0, 1]
    assert plan_groups([], 24) == []


def tiny_gpt2() -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64,
        bos_token_id=2, eos_token_id=2,
    )  # fmt: skip
    model: Any = transformers.GPT2LMHeadModel(config)
    return model.eval()


class Rows:
    """Rows and sequence lengths of every call of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.lengths: list[tuple[int, int]] = []
        module.register_forward_pre_hook(self.record, with_kwargs=True)

    def record(self, _: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        assert ids is not None
        self.lengths.append((int(ids.shape[0]), int(ids.shape[1])))


@pytest.mark.parametrize("cache", [True, False])
def test_feature_ablation_runs_one_row_per_feature_and_the_clean_row(
    cache: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_gpt2()
    rows = Rows(model.transformer)
    if not cache:
        monkeypatch.setattr(scoring, "caches_prefix", lambda lm: False)
    prompt, continuation = [5, 9, 13, 17, 21, 25], [7, 9, 11]
    exp = explain_generation(
        model, prompt, continuation=continuation, features="tokens", baseline=0,
        batch_size=4,
    )  # fmt: skip
    assert exp.attributions.shape == (3, 6)
    total = len(prompt) + len(continuation) - 1  # the last token predicts no step
    # cached: the clean run (which also scores the explanation) and one row per feature;
    # uncached: the all-kept coalition, one row per feature and the explanation's own pass
    assert sum(r for r, _ in rows.lengths) == (7 if cache else 8)
    if cache:
        assert rows.lengths[0] == (1, total)
        assert all(length <= total for _, length in rows.lengths[1:])
        assert any(length < total for _, length in rows.lengths[1:])  # rows from a prefix
    else:
        assert all(length == total for _, length in rows.lengths)


def test_plan_sharing_picks_the_cheapest_depth_or_none() -> None:
    from faithmap.generation.prefix_cache import first_changed_tokens, plan_sharing

    generator = torch.Generator().manual_seed(0)
    keep = (torch.rand(64, 12, generator=generator) < 0.5).float()
    first = first_changed_tokens(keep)
    rows, length = keep[first < 12], 20
    starts = first[first < 12].tolist()
    plan = plan_sharing(rows, starts, length, most=64)
    assert plan is not None
    depth, prefixes = plan

    def cost(d: int) -> int:  # the prefixes of depth d (the clean one too), and what they save
        distinct = torch.unique(torch.cat([torch.ones(1, 12), rows])[:, :d], dim=0).shape[0]
        return int(CALL_POSITIONS + distinct * d - sum(d - s for s in starts if s < d))

    assert prefixes.shape[1] == depth
    assert cost(depth) == min(cost(d) for d in range(1, 13)) < 0
    assert (prefixes == 1).all(dim=1).any()  # the clean prefix is among them
    # feature ablation's rows (one removed token each) share nothing worth a call
    ablation = 1.0 - torch.eye(12)
    assert plan_sharing(ablation, list(range(12)), length, most=64) is None
    assert plan_sharing(rows, starts, length, most=1) is None  # too many prefixes per call


@pytest.mark.parametrize(
    ("method", "params"),
    [("lime", {"n_samples": 64}), ("kernel_shap", {"n_samples": 64, "exact": False})],
)
def test_shared_prefixes_give_the_uncached_scores_on_fewer_positions(
    method: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny_gpt2()
    rows = Rows(model.transformer)
    kwargs: dict[str, Any] = dict(
        continuation=[7, 9, 11], features="tokens", baseline=0, method=method, batch_size=16,
        **params,
    )  # fmt: skip
    prompt = list(range(5, 21))
    shared = explain_generation(model, prompt, **kwargs)
    calls = list(rows.lengths)
    # the clean run, then one call of the shared prefixes (16 rows of a few positions at most)
    assert calls[0] == (1, len(prompt) + 2)
    assert calls[1][0] <= 16 and calls[1][1] < len(prompt) // 2
    positions = sum(r * t for r, t in calls)
    rows.lengths.clear()
    import faithmap.generation.prefix_cache as prefix_cache

    monkeypatch.setattr(prefix_cache, "plan_sharing", lambda *_: None)
    unshared = explain_generation(model, prompt, **kwargs)
    assert sum(r * t for r, t in rows.lengths) > positions
    rows.lengths.clear()
    monkeypatch.setattr(scoring, "caches_prefix", lambda lm: False)
    uncached = explain_generation(model, prompt, **kwargs)
    for other in (unshared, uncached):
        torch.testing.assert_close(shared.attributions, other.attributions, atol=1e-5, rtol=0)
        torch.testing.assert_close(shared.scores, other.scores, atol=1e-5, rtol=0)
    assert shared.cost.forward == unshared.cost.forward  # the same coalitions are counted
