"""A text as tokens, words and spans: what a text explanation attributes to.

A Hugging Face *fast* tokenizer gives each token its character offsets in the text and the index
of the word it belongs to. :func:`tokenize` keeps both, and :func:`text_regions` turns them into
a :class:`~faithmap.Regions` label map over token positions, shaped ``(1, T, 1)`` to match the
embedding inputs of :class:`~faithmap.text.model.EmbeddingClassifier` (``(1, D, T, 1)``), so
every perturbation method and metric removes whole words, spans or tokens.

Special tokens (``[CLS]``, ``[SEP]``) are never removed: their embedding input is zero (see
:mod:`faithmap.text.model`), so whatever region holds them, blending leaves them as they are.
They are given the label of the nearest ordinary token, so no region is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.core.regions import Regions
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError
from faithmap.text.word_tokenizer import WordTokenizer


@dataclass(frozen=True)
class TokenizedText:
    """A text split by a tokenizer.

    Attributes
    ----------
    text : str
        The text itself.
    input_ids : Tensor
        ``(T,)`` int64 token ids, special tokens included.
    tokens : list of str
        The token strings.
    special : Tensor
        ``(T,)`` bool, ``True`` at special tokens.
    word_of : Tensor
        ``(T,)`` int64 word index of each token, ``-1`` at special tokens.
    words : list of str
        Each word as it appears in the text.
    word_spans : list of (int, int)
        Character offsets ``[start, end)`` of each word in ``text``.
    unknown : Tensor
        ``(T,)`` bool, ``True`` at tokens the tokenizer's vocabulary lacks (its unknown token,
        such as ``[UNK]``): the model reads them all alike, whatever the word was.
    """

    text: str
    input_ids: Tensor
    tokens: list[str]
    special: Tensor
    word_of: Tensor
    words: list[str]
    word_spans: list[tuple[int, int]]
    unknown: Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def unknown_words(self) -> list[int]:
        """The indices of the words with a token unknown to the vocabulary, in order."""
        return sorted({int(w) for w in self.word_of[self.unknown & (self.word_of >= 0)]})


def tokenize(tokenizer: Any, text: str) -> TokenizedText:
    """Split ``text`` with a Hugging Face fast tokenizer, keeping offsets and word indices.

    Parameters
    ----------
    tokenizer : transformers.PreTrainedTokenizerFast or WordTokenizer
        Any fast tokenizer (``tokenizer.is_fast``; slow tokenizers give no offsets), or
        faithmap's :class:`~faithmap.text.word_tokenizer.WordTokenizer`.
    text : str
        The text to explain.

    Raises
    ------
    InvalidParameterError
        If the tokenizer is not a fast tokenizer, or the text has no word.
    """
    if not isinstance(text, str):
        raise InvalidParameterError(f"The text must be a str. Got {type(text).__name__} instead.")
    if not (isinstance(tokenizer, WordTokenizer) or getattr(tokenizer, "is_fast", False)):
        raise InvalidParameterError(
            "faithmap.text needs a Hugging Face fast tokenizer (tokenizer.is_fast) or a "
            "WordTokenizer, which give each token's character offsets. Got "
            f"{type(tokenizer).__name__} instead; load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    encoding = tokenizer(
        text,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        truncation=True,
    )
    ids = list(encoding["input_ids"])
    offsets = [tuple(pair) for pair in encoding["offset_mapping"]]
    special_list = [bool(flag) for flag in encoding["special_tokens_mask"]]
    raw_words = encoding.word_ids()
    word_index: dict[int, int] = {}
    word_of: list[int] = []
    spans: list[list[int]] = []
    for position, word in enumerate(raw_words):
        if word is None or special_list[position]:
            word_of.append(-1)
            continue
        if word not in word_index:
            word_index[word] = len(spans)
            spans.append([offsets[position][0], offsets[position][1]])
        index = word_index[word]
        spans[index][0] = min(spans[index][0], offsets[position][0])
        spans[index][1] = max(spans[index][1], offsets[position][1])
        word_of.append(index)
    if not spans:
        raise InvalidParameterError(
            f"The text {text!r} has no word to explain after tokenisation. Pass a non-empty text."
        )
    return TokenizedText(
        text=text,
        input_ids=torch.tensor(ids, dtype=torch.long),
        tokens=list(tokenizer.convert_ids_to_tokens(ids)),
        special=torch.tensor(special_list, dtype=torch.bool),
        word_of=torch.tensor(word_of, dtype=torch.long),
        words=[text[start:end] for start, end in spans],
        word_spans=[(start, end) for start, end in spans],
        unknown=_unknown(tokenizer, ids, special_list),
    )


def _unknown(tokenizer: Any, ids: list[int], special: list[bool]) -> Tensor:
    """``(T,)`` bool: the ordinary tokens that are the tokenizer's unknown token."""
    unk = getattr(tokenizer, "unk_token_id", None)
    return torch.tensor(
        [unk is not None and i == unk and not s for i, s in zip(ids, special, strict=True)],
        dtype=torch.bool,
    )


def nearest_ordinary(special: Tensor) -> Tensor:
    """For every position, the index of the nearest non-special token (itself if ordinary)."""
    positions = torch.arange(special.shape[0])
    ordinary = positions[~special]
    distance = (positions[:, None] - ordinary[None, :]).abs()
    return ordinary[distance.argmin(dim=1)]


def text_regions(tokens: TokenizedText, regions: str = "words") -> Regions:
    """The features of a text as a label map ``(1, T, 1)`` over its token positions.

    Parameters
    ----------
    tokens : TokenizedText
    regions : {"words", "tokens"} or "spans:K", default="words"
        ``"words"``: the tokens of one word form a feature; ``"tokens"``: every token is one;
        ``"spans:K"``: ``K`` consecutive words form one. Special tokens join the feature of
        the nearest ordinary token (they are never changed by a removal).

    Returns
    -------
    Regions
        ``labels`` ``(1, T, 1)``, ``kind`` ``"words"``, ``"tokens"`` or ``"spans:K"``.
    """
    name, _, arg = str(regions).partition(":")
    if name == "words" and not arg:
        per_token, span = tokens.word_of, 1
    elif name == "tokens" and not arg:
        per_token, span = torch.arange(len(tokens)), 1
    elif name == "spans" and arg.isdigit():
        per_token, span = tokens.word_of, check_int(int(arg), "K", "spans:K", low=1)
    else:
        raise InvalidParameterError(
            "The 'regions' parameter for a text must be 'words', 'tokens' or 'spans:K' (K "
            f"consecutive words). Got {regions!r} instead."
        )
    labels = per_token[nearest_ordinary(tokens.special)]
    labels = labels // span
    _, consecutive = torch.unique(labels, return_inverse=True)
    return Regions(consecutive.view(1, -1, 1), int(consecutive.max()) + 1, str(regions))
