"""The function every generation method explains: prompt features in, each step's target out.

Removal works in embedding space, as for faithmap's text classifiers
(:mod:`faithmap.text.model`): a removed prompt token's embedding is replaced by a baseline
embedding (zero, or the embedding of the pad, unk or end-of-sequence token, or of any given
token id), and the model runs on the blended prompt embeddings. A plain callable of token ids
has no embeddings; there the removed token is replaced by the baseline token id (exactly what
the embedding of that id does to a module). Integrated gradients runs from the baseline
embeddings to the prompt's own.

:class:`KeepScorer` maps feature keep vectors ``(B, F)`` to the targets of every step
``(B, S)``, :class:`EmbeddingScorer` maps prompt embeddings ``(B, P, D)`` to them: one
teacher-forced forward pass of ``prompt + continuation`` per row scores all ``S`` steps. Both are
``nn.Module`` so that :class:`faithmap.Model` batches them and counts their passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.errors import InvalidParameterError
from faithmap.generation.continuation import Continuation, tail_scores, window_scores
from faithmap.generation.features import PromptFeatures
from faithmap.generation.language_model import CausalLM, logits_of_lm
from faithmap.generation.prefix_cache import PrefixCache, caches_prefix, first_changed_tokens

BaselineSpec = str | int
"""``"zero"`` (embeddings only), ``"pad"``, ``"unk"``, ``"eos"`` or a token id."""

TOKEN_NAMES = ("pad", "unk", "eos")


@dataclass(frozen=True)
class Baseline:
    """What a removed prompt token becomes.

    Attributes
    ----------
    spec : str or int
        As given.
    token_id : int or None
        The baseline token (``None`` for the zero embedding).
    embedding : Tensor or None
        ``(D,)`` the baseline embedding (``None`` for a plain callable).
    """

    spec: BaselineSpec
    token_id: int | None
    embedding: Tensor | None


def make_baseline(lm: CausalLM, spec: BaselineSpec) -> Baseline:
    """Resolve ``spec`` for ``lm``: the baseline token id and, for a module, its embedding."""
    if isinstance(spec, bool) or not isinstance(spec, str | int):
        raise InvalidParameterError(
            f"The 'baseline' must be 'zero', 'pad', 'unk', 'eos' or a token id. Got {spec!r}."
        )
    token_id: int | None
    if isinstance(spec, int):
        token_id = spec
    elif spec == "zero":
        token_id = None
    elif spec in TOKEN_NAMES:
        found = getattr(lm.tokenizer, f"{spec}_token_id", None)
        if found is None:
            raise InvalidParameterError(
                f"baseline={spec!r} needs the tokenizer's {spec} token, and "
                f"{'there is no tokenizer' if lm.tokenizer is None else 'it has none'}. Pass "
                "tokenizer=..., another baseline, or a token id."
            )
        token_id = int(found)
    else:
        raise InvalidParameterError(
            f"The 'baseline' must be 'zero', 'pad', 'unk', 'eos' or a token id. Got {spec!r}."
        )
    if not lm.has_embeddings:
        if token_id is None:
            raise InvalidParameterError(
                "baseline='zero' replaces embeddings, but this model is a plain callable of "
                "token ids. Use baseline='pad', 'unk', 'eos' or a token id."
            )
        return Baseline(spec, token_id, None)
    if token_id is None:
        dimension = lm.embed(torch.zeros(1, dtype=torch.long)).shape[1]
        return Baseline(spec, None, torch.zeros(dimension, device=lm.device))
    return Baseline(spec, token_id, lm.embed(torch.tensor([token_id]))[0])


class EmbeddingScorer(nn.Module):
    """Prompt embeddings ``(B, P, D)`` to every step's target ``(B, S)``.

    While ``track_inputs`` is set and autograd is on, each call marks its input as requiring
    grad and keeps it as ``tracked``, so the gradients of every step can be taken from one
    forward pass (:func:`faithmap.generation.gradients.path_gradients`). For a Hugging Face
    model whose output layer is an ``nn.Linear`` that gives the logits unchanged, such a call
    also applies that layer and the log-softmax to each step's hidden state on its own and
    keeps each step's ``(B,)`` targets in ``step_targets``: a step's backward pass then runs the
    output layer and the log-softmax on its own ``(B, V)`` slice only, where from the joint
    ``(B, S, V)`` logits each of the ``S`` backward passes would run them on all ``S`` slices
    (:meth:`split_targets`; the targets are the same, ``tests/test_generation_methods.py``).
    """

    tracked: Tensor | None
    step_targets: list[Tensor] | None

    def __init__(self, lm: CausalLM, continuation: Continuation) -> None:
        super().__init__()
        self.lm = lm
        if isinstance(lm.model, nn.Module):
            self.module = lm.model  # registered, so Model's eval mode and flags reach it
        self.continuation = continuation
        self.sequence = continuation.inputs.to(lm.device)
        self.track_inputs = False
        self.tracked = None
        self.step_targets = None

    def forward(self, prompt_embeddings: Tensor) -> Tensor:
        """Targets ``(B, S)`` of the continuation after these prompt embeddings."""
        batch = prompt_embeddings.shape[0]
        ids = self.sequence[None].expand(batch, -1)
        continuation = self.continuation
        if self.track_inputs and torch.is_grad_enabled():
            self.tracked = prompt_embeddings.requires_grad_(True)
            head = output_head(self.lm)
            if head is not None:
                return self.split_targets(ids, prompt_embeddings, head)
        logits = self.lm.logits(ids, prompt_embeddings, last=continuation.steps)
        return tail_scores(logits, continuation.ids, continuation.contrast)

    def split_targets(self, ids: Tensor, prompt_embeddings: Tensor, head: nn.Linear) -> Tensor:
        """Targets ``(B, S)``, each step's from its own output-layer slice: the model runs with
        ``head`` applied to each step's hidden state ``(B, D)`` separately, and the ``S``
        per-step targets ``(B,)`` are kept in ``step_targets``. Should the model's logits not
        be what ``head`` gave (an output layer followed by more work), the targets come from
        the model's logits as without the split, and ``step_targets`` stays ``None``."""
        continuation = self.continuation
        steps = continuation.steps
        pieces: list[Tensor] = []
        given: list[Tensor] = []

        def per_step(hidden: Tensor) -> Tensor:
            pieces.clear()
            if hidden.dim() != 3 or hidden.shape[1] != steps:
                return F.linear(hidden, head.weight, head.bias)
            pieces.extend(F.linear(hidden[:, s], head.weight, head.bias) for s in range(steps))
            given.append(torch.stack(pieces, dim=1))
            return given[-1]

        self.step_targets = None
        with replaced_forward(head, per_step):
            output = self.lm.run(ids, prompt_embeddings, logits_to_keep=steps)
        logits = logits_of_lm(output, ids[:, -steps:])
        if len(given) != 1 or logits is not given[0]:
            return tail_scores(logits, continuation.ids, continuation.contrast)
        contrast = continuation.contrast
        self.step_targets = [
            window_scores(
                piece[:, None],
                continuation.ids[s : s + 1],
                None if contrast is None else contrast[s : s + 1],
            )[:, 0]
            for s, piece in enumerate(pieces)
        ]
        return torch.stack(self.step_targets, dim=1)


def output_head(lm: CausalLM) -> nn.Linear | None:
    """The output layer of a Hugging Face model that trims its logits, if it is an
    ``nn.Linear`` (the layer :meth:`EmbeddingScorer.split_targets` applies per step)."""
    if not (lm.hugging_face and lm.trims_logits):
        return None
    getter = getattr(lm.model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if isinstance(head, nn.Linear) else None


@contextmanager
def replaced_forward(module: nn.Module, forward: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Inside the block, calling ``module`` runs ``forward`` (its hooks still run)."""
    own = vars(module).get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own


class KeepScorer(nn.Module):
    """Feature keep vectors ``(B, F)`` (1 keep, 0 remove) to every step's target ``(B, S)``.

    Modules blend embeddings ``baseline + keep * (embedding - baseline)``; a plain callable
    gets the baseline token id where ``keep < 0.5``.
    """

    def __init__(
        self, lm: CausalLM, continuation: Continuation, features: PromptFeatures, baseline: Baseline
    ) -> None:
        super().__init__()
        self.embedded = EmbeddingScorer(lm, continuation)
        self.features = features
        self.baseline = baseline
        prompt = continuation.prompt.ids.to(lm.device)
        self.own = lm.embed(prompt) if baseline.embedding is not None else None
        self.prefix: PrefixCache | None = None
        if self.own is not None and baseline.embedding is not None and caches_prefix(lm):
            clean = baseline.embedding + 1.0 * (self.own - baseline.embedding)  # as rows blend
            made = PrefixCache(lm, continuation, clean)
            self.prefix = made if made.usable else None

    def forward(self, keep: Tensor) -> Tensor:
        """Targets ``(B, S)`` with the features ``keep`` says kept."""
        token_keep = self.features.token_keep(keep)
        lm = self.embedded.lm
        if self.own is None or self.baseline.embedding is None:
            prompt = self.embedded.continuation.prompt.ids.to(keep.device)
            assert self.baseline.token_id is not None  # make_baseline's invariant
            ids = torch.where(token_keep >= 0.5, prompt, self.baseline.token_id)
            rest = self.embedded.sequence[len(prompt) :].expand(keep.shape[0], -1)
            continuation = self.embedded.continuation
            logits = lm.logits(torch.cat([ids, rest], dim=1), last=continuation.steps)
            return tail_scores(logits, continuation.ids, continuation.contrast)
        weights = token_keep[..., None].to(self.own.dtype)
        blended = self.baseline.embedding + weights * (self.own - self.baseline.embedding)
        if self.prefix is not None:  # rows continue the clean prompt's cached prefix
            first = first_changed_tokens(token_keep)
            return self.prefix.scores(blended, first, self.embedded, token_keep)
        scores: Tensor = self.embedded(blended)
        return scores

    def first_changed(self, keep: Tensor) -> Tensor:
        """``(B,)`` the first prompt position each keep vector ``(B, F)`` changes (``P`` where
        it changes none): the rows agree with the clean prompt before it."""
        return first_changed_tokens(self.features.token_keep(keep))

    def share_prefixes(self, keep: Tensor, most: int) -> None:
        """Before the rows ``keep`` ``(C, F)`` are scored: run the prompt prefixes they share
        once (:meth:`faithmap.generation.prefix_cache.PrefixCache.share`), at most ``most``
        prefix rows in the call."""
        if self.prefix is None or self.own is None or self.baseline.embedding is None:
            return
        own, base = self.own, self.baseline.embedding

        def blend(prefixes: Tensor) -> Tensor:
            weights = prefixes[..., None].to(own.dtype)
            return base + weights * (own[: prefixes.shape[1]] - base)

        self.prefix.share(self.features.token_keep(keep), blend, most)

    def unshare(self) -> None:
        """Drop the shared prefixes of :meth:`share_prefixes`."""
        if self.prefix is not None:
            self.prefix.shared = None
