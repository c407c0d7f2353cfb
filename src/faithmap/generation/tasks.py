"""Synthetic generation tasks whose answers depend on known prompt tokens.

Three tasks, each prompt starting with the task's name token, all in one word vocabulary
(:data:`VOCABULARY`, one token per word, tokenized by :func:`make_tokenizer`):

``kv`` (key–value retrieval)
    ``kv a = 3 b = 7 c = 1 ; b ?`` → ``7``. The answer depends on the query key, the
    matching key and its value.
``copy``
    ``copy 3 a 7 b >`` → ``3 a 7 b``. Generated step ``t`` depends on the ``t``-th copied symbol.
``count``
    ``count a : b a c a a b ?`` → ``3``. The answer depends on the query letter and on every
    occurrence of it (at least one).

Each example carries, per generated step, the prompt positions the answer depends on
(``dependencies``): the ground truth against which attributions are scored (hit rates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.validation import check_choice, check_int
from faithmap.errors import InvalidParameterError
from faithmap.text.word_tokenizer import WordTokenizer

SPECIAL = ("[PAD]", "[UNK]", "[MASK]")
TASKS = ("kv", "copy", "count")
KEYS = ("a", "b", "c", "d", "e", "f", "g", "h")
DIGITS = tuple(str(d) for d in range(10))
PUNCTUATION = ("=", ";", "?", ">", ":")
VOCABULARY = SPECIAL + TASKS + KEYS + DIGITS + PUNCTUATION
"""The tokens of every task; a token's id is its position."""
MASK_ID = VOCABULARY.index("[MASK]")
COUNT_LETTERS = KEYS[:4]
"""The letters of the counting task."""
SIZES = {"kv": 3, "copy": 4, "count": 4}
"""Each task's default size: key-value pairs, symbols copied, letters counted."""


@dataclass(frozen=True)
class TaskExamples:
    """Examples of one task, all of the same prompt and answer length.

    Attributes
    ----------
    task : str
        One of :data:`TASKS`.
    prompts : Tensor
        ``(N, P)`` int64 token ids.
    answers : Tensor
        ``(N, S)`` int64 token ids of the correct continuation (``S`` generated steps).
    dependencies : list of list of list of int
        ``dependencies[i][t]``: the prompt positions step ``t`` of example ``i`` depends on.
    """

    task: str
    prompts: Tensor
    answers: Tensor
    dependencies: list[list[list[int]]]

    @property
    def sequences(self) -> Tensor:
        """``(N, P + S)`` prompts followed by their answers (teacher forcing)."""
        return torch.cat([self.prompts, self.answers], dim=1)

    def texts(self) -> list[str]:
        """The prompts as text, words separated by spaces."""
        return [" ".join(VOCABULARY[i] for i in row) for row in self.prompts.tolist()]


def _ids(words: list[str]) -> list[int]:
    return [VOCABULARY.index(word) for word in words]


def _kv(generator: torch.Generator, pairs: int) -> tuple[list[str], list[str], list[list[int]]]:
    keys = [KEYS[int(i)] for i in torch.randperm(len(KEYS), generator=generator)[:pairs]]
    values = [DIGITS[int(i)] for i in torch.randint(10, (pairs,), generator=generator)]
    asked = int(torch.randint(pairs, (1,), generator=generator))
    words = ["kv"]
    for key, value in zip(keys, values, strict=True):
        words += [key, "=", value]
    words += [";", keys[asked], "?"]
    depends = [1 + 3 * asked, 3 + 3 * asked, len(words) - 2]
    return words, [values[asked]], [sorted(depends)]


def _copy(generator: torch.Generator, length: int) -> tuple[list[str], list[str], list[list[int]]]:
    symbols = KEYS + DIGITS
    copied = [symbols[int(i)] for i in torch.randint(len(symbols), (length,), generator=generator)]
    words = ["copy", *copied, ">"]
    return words, copied, [[1 + t] for t in range(length)]


def _count(generator: torch.Generator, length: int) -> tuple[list[str], list[str], list[list[int]]]:
    letters = len(COUNT_LETTERS)
    asked = int(torch.randint(letters, (1,), generator=generator))
    draws = torch.randint(letters, (length,), generator=generator)
    draws[int(torch.randint(length, (1,), generator=generator))] = asked  # at least one
    sequence = [COUNT_LETTERS[int(i)] for i in draws]
    words = ["count", COUNT_LETTERS[asked], ":", *sequence, "?"]
    depends = [1] + [3 + p for p, letter in enumerate(draws.tolist()) if letter == asked]
    return words, [str(len(depends) - 1)], [depends]


def make_task(task: str, n: int, *, size: int | None = None, seed: int = 0) -> TaskExamples:
    """``n`` examples of ``task`` drawn from ``seed``.

    Parameters
    ----------
    task : {"kv", "copy", "count"}
    n : int
        Number of examples.
    size : int, optional
        Pairs of ``kv`` (default 3, at most 8), symbols copied by ``copy`` or letters counted by
        ``count`` (default 4, at most 9).
    seed : int, default=0

    References
    ----------
    Olsson et al., "In-context Learning and Induction Heads", Transformer Circuits Thread, 2022
    (copying and associative recall as tasks with a known mechanism); Arras, Osman, Samek,
    "CLEVR-XAI", Information Fusion 81, 2022 (synthetic tasks with known relevant features as
    ground truth for explanations).
    """
    check_choice(task, "task", "make_task", TASKS)
    check_int(n, "n", "make_task", low=1)
    size = SIZES[task] if size is None else check_int(size, "size", "make_task", low=1)
    check_int(seed, "seed", "make_task")
    limit = len(KEYS) if task == "kv" else 9
    if size > limit:
        raise InvalidParameterError(
            f"The 'size' parameter of make_task must be at most {limit} for the {task!r} task. "
            f"Got {size} instead."
        )
    generator = torch.Generator().manual_seed(seed * len(TASKS) + TASKS.index(task))
    draw = {"kv": _kv, "copy": _copy, "count": _count}[task]
    prompts, answers, dependencies = [], [], []
    for _ in range(n):
        words, answer, depends = draw(generator, size)
        prompts.append(_ids(words))
        answers.append(_ids(answer))
        dependencies.append(depends)
    return TaskExamples(task, torch.tensor(prompts), torch.tensor(answers), dependencies)


def content_features(prompt: Tensor) -> Tensor:
    """``(P,)`` feature labels of one prompt: each content token (key, letter, digit) its own
    feature, in order; structure tokens (task name, punctuation) ``-1``, never removed.

    Removing a structure token breaks the prompt's format, which changes any answer; the tasks'
    ground truth is about which *content* the answer reads.
    """
    content = torch.tensor([token in KEYS + DIGITS for token in VOCABULARY])[prompt]
    labels = torch.full(prompt.shape, -1, dtype=torch.long)
    labels[content] = torch.arange(int(content.sum()))
    return labels


def make_tokenizer() -> WordTokenizer:
    """The tokenizer of :data:`VOCABULARY`: one token per word or punctuation mark.

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020
    (System Demonstrations): the word-level model and whitespace split it reproduces.
    """
    return WordTokenizer(VOCABULARY, unk_token="[UNK]", pad_token="[PAD]", mask_token="[MASK]")
