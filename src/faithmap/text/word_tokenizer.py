"""A word-level tokenizer in plain Python: the built-in word model needs no ``transformers``.

:class:`WordTokenizer` lower-cases a text, splits it into runs of word characters and runs of
punctuation (the rule of Hugging Face's ``Whitespace`` pre-tokenizer, ``\\w+|[^\\w\\s]+``), and
maps each piece to its id in a fixed vocabulary, unknown pieces to the unknown token. It answers
the part of a Hugging Face fast tokenizer's interface that :func:`~faithmap.text.tokenize` and
:func:`~faithmap.text.explain_text` read: ``tokenizer(text, return_offsets_mapping=True, ...)``
with ``word_ids()``, ``convert_ids_to_tokens`` and the special token ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from faithmap.errors import InvalidParameterError

PIECE = re.compile(r"\w+|[^\w\s]+")
"""One token: a run of word characters, or a run of other non-space characters."""


class WordEncoding(dict[str, list[Any]]):
    """The encoding of one text: ``input_ids``, ``offset_mapping``, ``special_tokens_mask``
    (no special tokens are added, so all ``0``) and :meth:`word_ids`."""

    def word_ids(self) -> list[int | None]:
        """The word index of each token: every token is one word."""
        return list(range(len(self["input_ids"])))


class WordTokenizer:
    """Lower-cased words and punctuation runs mapped to a fixed vocabulary.

    Parameters
    ----------
    vocabulary : sequence of str
        The tokens; a token's id is its position.
    unk_token, pad_token, mask_token : str
        The unknown, padding and mask tokens; each must be in ``vocabulary``.

    Examples
    --------
    >>> tokenizer = WordTokenizer(["[PAD]", "[UNK]", "[MASK]", "the", "plot", "!"])
    >>> encoding = tokenizer("The plot, dull!", return_offsets_mapping=True)
    >>> encoding["input_ids"], encoding["offset_mapping"][2]
    ([3, 4, 1, 1, 5], (8, 9))

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020
    (System Demonstrations): the fast-tokenizer interface followed here.
    """

    is_fast = True
    """It gives character offsets (``return_offsets_mapping``), as Hugging Face fast
    tokenizers do."""

    def __init__(
        self,
        vocabulary: Sequence[str],
        *,
        unk_token: str = "[UNK]",
        pad_token: str = "[PAD]",
        mask_token: str = "[MASK]",
    ) -> None:
        self.vocabulary = tuple(vocabulary)
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        missing = [t for t in (unk_token, pad_token, mask_token) if t not in self.ids]
        if missing:
            raise InvalidParameterError(
                f"The special tokens {missing} of a WordTokenizer must be in its vocabulary. Add "
                "them to the vocabulary or name tokens it has."
            )
        self.unk_token, self.pad_token, self.mask_token = unk_token, pad_token, mask_token
        self.unk_token_id = self.ids[unk_token]
        self.pad_token_id = self.ids[pad_token]
        self.mask_token_id = self.ids[mask_token]

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __call__(self, text: str, **options: Any) -> WordEncoding:
        """Encode ``text``. ``options`` (``return_offsets_mapping``, ``truncation``, ...) are
        accepted for the fast-tokenizer interface; the encoding always holds every field."""
        pieces = list(PIECE.finditer(text))
        ids = [self.ids.get(piece.group().lower(), self.unk_token_id) for piece in pieces]
        return WordEncoding(
            input_ids=ids,
            offset_mapping=[piece.span() for piece in pieces],
            special_tokens_mask=[0] * len(ids),
        )

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """The token of each id."""
        return [self.vocabulary[int(i)] for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """The tokens of ``ids`` joined by spaces."""
        return " ".join(self.convert_ids_to_tokens(ids))
