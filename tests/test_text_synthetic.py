"""The self-trained text classifier: the known deciding words must come out on top."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from faithmap.text import (
    WordTokenizer,
    explain_text,
    load_word_cnn,
    make_sentences,
    make_tokenizer,
    text_insertion,
)
from faithmap.text.synthetic import NEGATIVE, POSITIVE
from faithmap.text.train import train_word_cnn

HELD_OUT = make_sentences(30, seed=101)


@pytest.fixture(scope="module")
def tokenizer() -> WordTokenizer:
    return make_tokenizer()


def accuracy(model: torch.nn.Module, seed: int) -> float:
    data = make_sentences(500, seed=seed)
    with torch.no_grad():
        return float((model(data.ids).argmax(1) == data.labels).double().mean())


def test_sentences_carry_their_deciding_words() -> None:
    data = make_sentences(50, length=6, seed=3)
    assert data.ids.shape == (50, 6) and int(data.labels.sum()) == 25
    for text, label, places in zip(data.texts, data.labels, data.deciding, strict=True):
        words = text.split()
        pool = POSITIVE if int(label) == 1 else NEGATIVE
        assert {i for i, w in enumerate(words) if w in POSITIVE + NEGATIVE} == set(places)
        assert all(words[i] in pool for i in places) and 1 <= len(places) <= 2


def test_tokenizer_gives_one_token_per_word(
    tokenizer: WordTokenizer,
) -> None:
    data = make_sentences(3, seed=4)
    for text, ids in zip(data.texts, data.ids, strict=True):
        assert tokenizer(text.upper())["input_ids"] == ids.tolist()


def test_shipped_classifier_solves_the_task() -> None:
    assert accuracy(load_word_cnn(), seed=99) >= 0.99


def test_training_learns_the_task_deterministically() -> None:
    assert accuracy(train_word_cnn(n_train=800, epochs=2, seed=1), seed=98) >= 0.95
    once = train_word_cnn(n_train=64, epochs=1, seed=2)
    again = train_word_cnn(n_train=64, epochs=1, seed=2)
    for left, right in zip(once.parameters(), again.parameters(), strict=True):
        assert torch.equal(left, right)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("integrated_gradients", {"steps": 16}),
        ("occlusion", {}),
        ("lima", {"pending": 2}),
        ("kernel_shap", {"n_samples": 64}),
    ],
)
def test_deciding_words_rank_first(
    tokenizer: WordTokenizer, method: str, params: dict[str, Any]
) -> None:
    model = load_word_cnn()
    hits = []
    for text, places in zip(HELD_OUT.texts, HELD_OUT.deciding, strict=True):
        explained = explain_text(model, tokenizer, text, method=method, batch_size=64, **params)
        hits.append(int(explained.word_scores.argmax()) in places)
    assert sum(hits) / len(hits) >= 0.9


def test_insertion_beats_random_order(tokenizer: object) -> None:
    model = load_word_cnn()
    ranked, shuffled = [], []
    for text in HELD_OUT.texts[:10]:
        explained = explain_text(model, tokenizer, text, steps=16, batch_size=64)
        ranked.append(float(text_insertion(explained).auc[0]))
        shuffled.append(float(text_insertion(explained, order="random").auc[0]))
    assert sum(ranked) / 10 > sum(shuffled) / 10 + 0.1
