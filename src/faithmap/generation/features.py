"""The features of a prompt: tokens, words, sentences or given character spans.

A feature is a set of prompt tokens removed together; :class:`PromptFeatures` holds one label
per prompt token (``-1`` for tokens that no feature holds: special tokens such as ``<s>``,
whitespace between words, text outside the given spans; they are never removed). This is the
``regions`` idea of images for a prompt, so every coalition method removes whole words or
sentences, as :func:`faithmap.text.text_regions` does for classifiers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError

FeatureSpec = str | Sequence[tuple[int, int]] | Tensor
"""``"tokens"``, ``"words"``, ``"sentences"``, character spans ``[(start, end), ...]`` or an
``(P,)`` integer label tensor (``-1``: never removed)."""

SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")


@dataclass(frozen=True)
class Prompt:
    """A prompt as token ids, with the character offsets of its tokens when it came as text.

    Attributes
    ----------
    ids : Tensor
        ``(P,)`` int64 token ids, special tokens included.
    tokens : list of str
        Each token's text (its characters in ``text``, or the tokenizer's token string).
    offsets : list of (int, int) or None
        Character offsets ``[start, end)`` of each token in ``text``; ``None`` without a text.
    special : Tensor
        ``(P,)`` bool, ``True`` at special tokens (never removed).
    text : str or None
    """

    ids: Tensor
    tokens: list[str]
    offsets: list[tuple[int, int]] | None
    special: Tensor
    text: str | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def make_prompt(prompt: str | Tensor | Sequence[int], tokenizer: Any = None) -> Prompt:
    """The prompt as ids: a text tokenised by a Hugging Face fast tokenizer, or given ids."""
    if isinstance(prompt, str):
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise InvalidParameterError(
                "A prompt given as text needs the model's Hugging Face fast tokenizer "
                "(tokenizer=..., with tokenizer.is_fast) for token offsets. Pass tokenizer=, or "
                "give the prompt as token ids."
            )
        encoding = tokenizer(prompt, return_offsets_mapping=True, return_special_tokens_mask=True)
        ids = torch.tensor(encoding["input_ids"], dtype=torch.long)
        offsets = [(int(a), int(b)) for a, b in encoding["offset_mapping"]]
        special = torch.tensor(encoding["special_tokens_mask"], dtype=torch.bool)
        tokens = [
            "" if s else prompt[a:b] for (a, b), s in zip(offsets, special.tolist(), strict=True)
        ]
        tokens = [
            t or tokenizer.convert_ids_to_tokens(int(i)) for t, i in zip(tokens, ids, strict=True)
        ]
        prompt_ = Prompt(ids, tokens, offsets, special, prompt)
    else:
        ids = (
            torch.as_tensor(prompt).long().reshape(-1) if not isinstance(prompt, Tensor) else prompt
        )
        if ids.dim() != 1 or ids.is_floating_point():
            raise ShapeError(
                "A prompt given as token ids must be one integer sequence (P,). Got a tensor of "
                f"shape {tuple(ids.shape)} and dtype {ids.dtype} instead."
            )
        ids = ids.long().cpu()
        tokens = (
            list(tokenizer.convert_ids_to_tokens(ids.tolist()))
            if tokenizer is not None
            else [str(int(i)) for i in ids]
        )
        prompt_ = Prompt(ids, tokens, None, torch.zeros(len(ids), dtype=torch.bool))
    if len(prompt_) == 0:
        raise InvalidParameterError("The prompt is empty. Give at least one token.")
    return prompt_


@dataclass(frozen=True)
class PromptFeatures:
    """The features of a prompt.

    Attributes
    ----------
    labels : Tensor
        ``(P,)`` int64: the feature of each prompt token, ``0 .. count - 1``, or ``-1`` for
        tokens that are never removed.
    names : list of str
        Each feature's text (its tokens joined).
    kind : str
        ``"tokens"``, ``"words"``, ``"sentences"``, ``"spans"`` or ``"labels"``.
    """

    labels: Tensor
    names: list[str]
    kind: str

    @property
    def count(self) -> int:
        """The number of features ``F``."""
        return len(self.names)

    def token_keep(self, keep: Tensor) -> Tensor:
        """Per-token keep values ``(B, P)`` from feature keep vectors ``(B, F)`` (1 where the
        token belongs to no feature)."""
        padded = torch.cat([keep, keep.new_ones(keep.shape[0], 1)], dim=1)
        index = torch.where(self.labels < 0, self.count, self.labels).to(keep.device)
        return padded[:, index]


def prompt_features(prompt: Prompt, spec: FeatureSpec = "words") -> PromptFeatures:
    """Group the prompt's tokens into features.

    Parameters
    ----------
    prompt : Prompt
    spec : {"tokens", "words", "sentences"}, list of (int, int) or Tensor, default="words"
        ``"tokens"``: every non-special token; ``"words"``: the tokens of one run of
        non-whitespace characters; ``"sentences"``: text up to ``.``, ``!`` or ``?`` followed by
        whitespace, or up to a line break; character spans ``[(start, end), ...]``: the tokens
        overlapping each span (tokens outside every span are kept); an ``(P,)`` integer tensor:
        the labels themselves (``-1`` never removed). Words, sentences and spans need a prompt
        given as text.
    """
    if isinstance(spec, Tensor):
        return _given_labels(prompt, spec)
    if spec == "tokens":
        ordinary = (~prompt.special).nonzero().flatten()
        labels = torch.full((len(prompt),), -1, dtype=torch.long)
        labels[ordinary] = torch.arange(ordinary.numel())
        return _finish(prompt, labels, "tokens")
    if isinstance(spec, str) and spec not in ("words", "sentences"):
        raise InvalidParameterError(
            "The 'features' of a prompt must be 'tokens', 'words', 'sentences', a list of "
            f"(start, end) character spans or a (P,) label tensor. Got {spec!r} instead."
        )
    if prompt.text is None or prompt.offsets is None:
        raise InvalidParameterError(
            f"Features {spec!r} need the prompt as text (for character offsets); this prompt was "
            "given as token ids. Use features='tokens' or a (P,) label tensor."
        )
    if isinstance(spec, str):
        kind = spec
        spans = (
            [m.span() for m in re.finditer(r"\S+", prompt.text)]
            if spec == "words"
            else _sentences(prompt.text)
        )
    else:
        kind = "spans"
        spans = _checked_spans(spec, len(prompt.text))
    labels = torch.full((len(prompt),), -1, dtype=torch.long)
    for position, (start, end) in enumerate(prompt.offsets):
        if prompt.special[position] or not prompt.text[start:end].strip():
            continue
        for index, (a, b) in enumerate(spans):
            if start < b and a < end:
                labels[position] = index
                break
    return _finish(prompt, labels, kind)


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (whitespace trimmed)."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for a, b in spans:
        piece = text[a:b]
        if piece.strip():
            left = len(piece) - len(piece.lstrip())
            trimmed.append((a + left, a + len(piece.rstrip())))
    return trimmed


def _checked_spans(spans: Sequence[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    checked = []
    for span in spans:
        if (
            not isinstance(span, tuple | list)
            or len(span) != 2
            or not all(isinstance(v, int) for v in span)
            or not 0 <= span[0] < span[1] <= length
        ):
            raise InvalidParameterError(
                "Each feature span must be a pair (start, end) of character offsets with 0 <= "
                f"start < end <= {length} (the prompt's length). Got {span!r} instead."
            )
        checked.append((int(span[0]), int(span[1])))
    return checked


def _given_labels(prompt: Prompt, labels: Tensor) -> PromptFeatures:
    if labels.shape != (len(prompt),) or labels.is_floating_point():
        raise ShapeError(
            f"A feature label tensor must hold one integer per prompt token, shape ({len(prompt)},)"
            f". Got shape {tuple(labels.shape)} and dtype {labels.dtype} instead."
        )
    return _finish(prompt, labels.long().cpu(), "labels")


def _finish(prompt: Prompt, labels: Tensor, kind: str) -> PromptFeatures:
    """Renumber the used labels ``0 .. F - 1`` in order of first appearance and name them."""
    used = [int(v) for v in labels.tolist() if v >= 0]
    if not used:
        raise InvalidParameterError(
            f"The prompt has no token to remove with features of kind {kind!r} (every token is "
            "special or outside the features). Give a prompt with words, or other features."
        )
    order = list(dict.fromkeys(used))
    renumber = {old: new for new, old in enumerate(order)}
    new = torch.tensor([renumber.get(int(v), -1) for v in labels.tolist()], dtype=torch.long)
    names = []
    for feature in range(len(order)):
        positions = (new == feature).nonzero().flatten().tolist()
        if prompt.text is not None and prompt.offsets is not None:
            start = prompt.offsets[positions[0]][0]
            end = prompt.offsets[positions[-1]][1]
            names.append(prompt.text[start:end].strip() or prompt.tokens[positions[0]])
        else:
            names.append(" ".join(prompt.tokens[p] for p in positions))
    return PromptFeatures(new, names, kind)
