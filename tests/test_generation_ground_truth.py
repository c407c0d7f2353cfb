"""The synthetic generation tasks, the shipped GPT's accuracy on fresh examples, and hit rates."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.generation import explain_generation
from faithmap.generation.gpt import TinyGpt, gpt_accuracy, greedy, load_gpt
from faithmap.generation.hit_rates import hit_rates, top_feature_hits
from faithmap.generation.tasks import (
    COUNT_LETTERS,
    MASK_ID,
    TASKS,
    VOCABULARY,
    content_features,
    make_task,
    make_tokenizer,
)
from faithmap.generation.train import HELD_OUT_SEED, mask_free_tokens, task_accuracy

ACCURACY_BAR = {"kv": 0.95, "copy": 0.95, "count": 0.95}
"""Each task's greedy exact-match accuracy on fresh examples must reach this (the shipped
weights score 1.000 on each over 1000 held-out examples). Chance on kv is 0.40: a guess among
the three values shown scores 1/3 + 2/3 x 1/10, as two keys can share a value digit."""


def words(ids: list[int]) -> list[str]:
    return [VOCABULARY[i] for i in ids]


def test_key_value_answers_are_the_asked_keys_values() -> None:
    data = make_task("kv", 50, seed=3)
    assert data.prompts.shape == (50, 1 + 3 * 3 + 3) and data.answers.shape == (50, 1)
    for prompt, answer, (depends,) in zip(
        data.prompts.tolist(), data.answers.tolist(), data.dependencies, strict=True
    ):
        tokens = words(prompt)
        key, value, query = depends
        assert query == len(prompt) - 2 and tokens[query + 1] == "?"
        assert tokens[key] == tokens[query] and tokens[key + 1] == "="
        assert value == key + 2 and prompt[value] == answer[0]
        assert tokens.count(tokens[query]) == 2  # keys are distinct


def test_copy_steps_depend_on_their_own_symbol() -> None:
    data = make_task("copy", 20, size=5, seed=4)
    for prompt, answer, depends in zip(
        data.prompts.tolist(), data.answers.tolist(), data.dependencies, strict=True
    ):
        assert [prompt[positions[0]] for positions in depends] == answer
        assert words(prompt)[0] == "copy" and words(prompt)[-1] == ">"


def test_count_answers_count_the_asked_letter_at_its_dependencies() -> None:
    data = make_task("count", 50, size=6, seed=5)
    for prompt, answer, (depends,) in zip(
        data.prompts.tolist(), data.answers.tolist(), data.dependencies, strict=True
    ):
        tokens = words(prompt)
        asked = tokens[1]
        assert asked in COUNT_LETTERS and depends[0] == 1
        occurrences = [p for p in range(3, len(tokens) - 1) if tokens[p] == asked]
        assert depends[1:] == occurrences and len(occurrences) >= 1
        assert VOCABULARY[answer[0]] == str(len(occurrences))


def test_tasks_are_seeded_and_tokenized_one_word_per_token() -> None:
    first, again = make_task("kv", 5, seed=9), make_task("kv", 5, seed=9)
    assert torch.equal(first.prompts, again.prompts)
    assert not torch.equal(first.prompts, make_task("kv", 5, seed=10).prompts)
    ids = make_tokenizer()(first.texts()[0])["input_ids"]
    assert ids == first.prompts[0].tolist()
    with pytest.raises(InvalidParameterError, match="task"):
        make_task("sort", 3)
    with pytest.raises(InvalidParameterError, match="at most 8"):
        make_task("kv", 3, size=9)


def test_training_masks_only_tokens_no_step_depends_on() -> None:
    data = make_task("kv", 64, seed=2)
    masked = mask_free_tokens(data.prompts, data.dependencies, 1.0, torch.Generator())
    mask = VOCABULARY.index("[MASK]")
    for row, (depends,) in enumerate(data.dependencies):
        changed = (masked[row] != data.prompts[row]).nonzero()[:, 0].tolist()
        assert not set(changed) & set(depends)
        # the other two pairs' keys and values, nothing structural
        assert len(changed) == 4 and (masked[row, changed] == mask).all()


def test_the_shipped_gpt_solves_fresh_examples() -> None:
    model = load_gpt()
    assert isinstance(model, TinyGpt) and not model.training
    for task in ACCURACY_BAR:
        # seed 3 * 10**6 + 1: no training step nor the recorded held-out set draws it
        assert task_accuracy(model, task, 200, seed=3 * 10**6 + 1) >= ACCURACY_BAR[task], task
    recorded = gpt_accuracy()
    assert set(recorded) == set(TASKS)
    assert task_accuracy(model, "copy", 1000, seed=HELD_OUT_SEED) == recorded["copy"]
    size = sum(p.numel() for p in model.parameters()) * 4
    assert size < 2 * 1024 * 1024


def test_greedy_continuation_and_errors() -> None:
    model = load_gpt()
    data = make_task("copy", 4, seed=11)
    assert greedy(model, data.prompts, 4).shape == (4, 4)
    with pytest.raises(ShapeError, match="at most 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ShapeError, match="exactly one"):
        model()


def test_top_feature_hits_by_hand() -> None:
    model = load_gpt()
    data = make_task("copy", 1, seed=12)
    exp = explain_generation(
        model, data.prompts[0], continuation=data.answers[0], features="tokens", baseline=2
    )
    rows = torch.zeros(4, 6)
    rows[0, 1] = rows[1, 2] = rows[2, 5] = rows[3, 0] = 1.0  # hit, hit, miss, miss
    made = dataclasses.replace(exp, attributions=rows)
    assert top_feature_hits(made, data.dependencies[0]).tolist() == [True, True, False, False]
    with pytest.raises(ShapeError, match="each of the 4 steps"):
        top_feature_hits(made, data.dependencies[0][:2])


def test_feature_ablation_finds_the_dependencies_of_the_shipped_gpt() -> None:
    rates = hit_rates(
        load_gpt(), {"feature_ablation": "feature_ablation"}, n=6, tasks=("kv", "copy")
    )
    for task in ("kv", "copy"):
        rate = rates[task]["feature_ablation"]
        assert isinstance(rate, float) and rate >= 0.75, (task, rate)


def test_feature_ablation_finds_the_counted_letters_when_the_count_is_above_one() -> None:
    """Every prompt holds the asked letter at least once, and the shipped GPT answers 1 even when
    its only occurrence is removed: a count of 1 sits at the floor no single removal lowers
    (measured: all 5 misses of 16 held-out examples). From 2 up, removing an occurrence changes
    the answer, and the top feature must be one."""
    model, data = load_gpt(), make_task("count", 24, seed=2_000_000)
    hits = []
    for prompt, answer, depends in zip(data.prompts, data.answers, data.dependencies, strict=True):
        if int(VOCABULARY[int(answer[0])]) < 2:
            continue
        exp = explain_generation(
            model, prompt, continuation=answer, features=content_features(prompt), baseline=MASK_ID
        )
        hits.append(top_feature_hits(exp, depends))
    assert len(hits) >= 8
    assert float(torch.cat(hits).double().mean()) >= 0.9
