"""A synthetic sentiment task whose deciding words are known.

Every sentence has ``length`` words: filler words that carry no label, and one or two *deciding*
words of one polarity (``great``, ``awful``, ...) at random positions. The label is the polarity
(1 positive, 0 negative), so an explanation of a classifier that solves the task is right when
it puts a deciding word first. The words are lower-case and split on whitespace by a word-level
tokenizer in plain Python (:class:`~faithmap.text.word_tokenizer.WordTokenizer`: no file, no
``transformers``), with ``[PAD]``, ``[UNK]`` and ``[MASK]`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.validation import check_int
from faithmap.text.word_tokenizer import WordTokenizer

SPECIAL = ("[PAD]", "[UNK]", "[MASK]")
POSITIVE = ("great", "superb", "wonderful", "brilliant", "delightful")
NEGATIVE = ("awful", "boring", "terrible", "dreadful", "tedious")
FILLER = (
    "the", "a", "movie", "film", "plot", "actor", "story", "scene", "music", "was", "is",
    "and", "with", "of", "this", "that", "cast", "ending", "director", "script", "very",
    "quite", "long", "short", "new", "old", "first", "last", "my", "friend", "saw", "it",
    "at", "night", "in", "town", "we", "they", "watched", "again",
)  # fmt: skip
VOCABULARY = SPECIAL + FILLER + POSITIVE + NEGATIVE
LABELS = ("negative", "positive")
"""The class names of the task, by label."""


@dataclass(frozen=True)
class SyntheticText:
    """Sentences of the synthetic task.

    Attributes
    ----------
    texts : list of str
    labels : Tensor
        ``(N,)`` int64, 1 for a positive sentence.
    deciding : list of list of int
        The word positions of each sentence's deciding words.
    ids : Tensor
        ``(N, length)`` token ids (one token per word, no special tokens).
    """

    texts: list[str]
    labels: Tensor
    deciding: list[list[int]]
    ids: Tensor


def make_sentences(n: int, *, length: int = 8, seed: int = 0) -> SyntheticText:
    """``n`` sentences of ``length`` words, half positive, drawn from ``seed``.

    References
    ----------
    Arras, Osman, Samek, "CLEVR-XAI: A Benchmark Dataset for the Ground Truth Evaluation of
    Neural Network Explanations", Information Fusion 81, 2022 (synthetic tasks with known
    relevant features as ground truth for explanations).
    """
    check_int(n, "n", "make_sentences", low=1)
    check_int(length, "length", "make_sentences", low=2)
    check_int(seed, "seed", "make_sentences")
    generator = torch.Generator().manual_seed(seed)
    index = {word: i for i, word in enumerate(VOCABULARY)}
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=generator)]
    fillers = torch.randint(len(FILLER), (n, length), generator=generator)
    counts = torch.randint(1, 3, (n,), generator=generator)
    texts, deciding, rows = [], [], []
    for row in range(n):
        words = [FILLER[int(i)] for i in fillers[row]]
        pool = POSITIVE if int(labels[row]) == 1 else NEGATIVE
        places = torch.randperm(length, generator=generator)[: int(counts[row])].sort().values
        choices = torch.randint(len(pool), (len(places),), generator=generator)
        for place, choice in zip(places.tolist(), choices.tolist(), strict=True):
            words[place] = pool[choice]
        texts.append(" ".join(words))
        deciding.append(places.tolist())
        rows.append([index[word] for word in words])
    return SyntheticText(texts, labels, deciding, torch.tensor(rows, dtype=torch.long))


def make_tokenizer() -> WordTokenizer:
    """The tokenizer of :data:`VOCABULARY`: lower-case words split on whitespace and
    punctuation, one token per word, unknown words ``[UNK]``. Plain Python, nothing to install.

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020
    (System Demonstrations): the word-level model and whitespace split it reproduces.
    """
    return WordTokenizer(VOCABULARY, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]")
