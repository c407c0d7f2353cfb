"""ReAGent on models whose dependency is known, its replacements, stopping rule and refusals."""

from __future__ import annotations

import pytest
import torch

from faithmap.errors import InvalidParameterError, TargetError
from faithmap.generation import CausalLM, explain_generation
from faithmap.generation.reagent import ReAGent, replacement_ids
from generation_standins import ConstantLm, PointerLm

PROMPT = [5, 6, 7, 8, 9]


def test_replacements_are_the_replacers_top_token_other_than_the_original() -> None:
    # ConstantLm ranks token 0 first, then 1: the replacement is 0, or 1 where the token is 0
    ids = replacement_ids(CausalLM(ConstantLm()), torch.tensor([4, 0, 3, 0, 2]))
    assert ids.tolist() == [4, 1, 0, 1, 0]  # the first token has no prefix and stays


def test_the_token_a_pointer_model_copies_comes_first() -> None:
    model = PointerLm(source=2)
    method = ReAGent(replacer=ConstantLm(), probes=8, seed=1)
    exp = explain_generation(model, PROMPT, method=method, continuation=[7, 7], features="tokens")
    assert exp.attributions.argmax(dim=1).tolist() == [2, 2]
    # replacing token 2 drops p(7) from ~1 to ~0, replacing any other changes nothing; the
    # search stops once token 2 is among the two kept, sharing its mass with features replaced
    # alongside it, so it gets more than a uniform share, not all of it
    assert (exp.attributions[:, 2] > 1 / 5).all()
    assert exp.attributions.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])


def test_the_stopping_rule_stops_every_probe_when_any_rank_will_do() -> None:
    # top_k = vocabulary: after the first update every probe stops
    method = ReAGent(replacer=ConstantLm(), probes=4, top_k=10, seed=0)
    exp = explain_generation(
        PointerLm(source=2), PROMPT, method=method, continuation=[7, 7, 7], features="tokens"
    )
    # one full pass, one update pass per probe, one stopping pass per probe and step, and the
    # explanation's own pass of the whole prompt
    assert exp.cost.forward == 1 + 4 + 4 * 3 + 1


def test_an_unstoppable_search_runs_max_updates() -> None:
    # the token is never in the top 1 when only one of the five features is kept (keep_ratio
    # 0.2 keeps feature 0 or 1 first at random) unless that feature is token 2; with a model
    # whose token depends on nothing kept, the search runs to the end
    method = ReAGent(replacer=ConstantLm(), probes=2, top_k=1, max_updates=5, seed=0)
    exp = explain_generation(
        ConstantLm(), PROMPT, method=method, continuation=[3], features="tokens"
    )
    # ConstantLm predicts token 0 first, never 3: every probe runs 5 updates and 5 checks
    assert exp.cost.forward == 1 + 5 * (2 + 2) + 1


def test_same_seed_same_attributions_and_the_seed_matters() -> None:
    model = PointerLm(source=1, strength=2.0)  # soft: replacements change p by varying amounts

    def run(seed: int) -> torch.Tensor:
        method = ReAGent(probes=3, max_updates=20, seed=seed)
        exp = explain_generation(model, PROMPT, method=method, continuation=[6], features="tokens")
        return exp.attributions

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_refusals() -> None:
    model = PointerLm(source=2)
    with pytest.raises(TargetError, match="contrastive"):
        explain_generation(
            model, PROMPT, method=ReAGent(), continuation=[7], contrast=1, features="tokens"
        )
    with pytest.raises(InvalidParameterError, match="replacing_ratio"):
        ReAGent(replacing_ratio=1.0)
    with pytest.raises(InvalidParameterError, match="replacer"):
        ReAGent(replacer="gpt2")
