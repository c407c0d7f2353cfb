"""Reuse of the unchanged prompt prefix's key-value cache when perturbed prompts are scored.

A perturbed prompt equals the clean one up to its first removed token ``j``: a causal model's
keys and values at positions ``< j`` are those of the clean prompt. :class:`PrefixCache` runs
the clean prompt once with ``use_cache=True`` and scores each perturbed row from position ``j``
on, its cache cropped to ``j`` and repeated over the rows sharing that ``j`` (rows are grouped by
it). Feature ablation's row ``j`` then computes ``P + S - j`` positions instead of ``P + S``.
Only Hugging Face models that trim their logits (``logits_to_keep``) and keep a croppable cache
take this path; the scores equal the uncached ones up to float rounding
(``tests/test_generation_methods.py`` checks 1e-5). The clean run is one extra forward pass per
explanation, not counted by :class:`faithmap.Model` (it scores no row).

References
----------
Pope et al., "Efficiently Scaling Transformer Inference", MLSys 2023 (the key-value cache);
Wolf et al., "Transformers", EMNLP 2020 (System Demonstrations): ``past_key_values``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from faithmap.generation.continuation import Continuation, tail_scores
from faithmap.generation.language_model import CausalLM, logits_of_lm


def caches_prefix(lm: CausalLM) -> bool:
    """Whether ``lm`` can continue from a cached prefix (a Hugging Face model that trims its
    logits; its cache is checked to be croppable when first made)."""
    return bool(lm.hugging_face and lm.trims_logits)


class PrefixCache:
    """The clean prompt's key-value cache and the scoring of rows that continue from it.

    Parameters
    ----------
    lm : CausalLM
        A model for which :func:`caches_prefix` holds.
    continuation : Continuation
    clean : Tensor
        ``(P, D)`` the clean prompt's embeddings, as the rows blend them.
    """

    def __init__(self, lm: CausalLM, continuation: Continuation, clean: Tensor) -> None:
        self.lm = lm
        self.continuation = continuation
        self.sequence = continuation.sequence.to(lm.device)
        length = clean.shape[0]
        with torch.no_grad():
            output = lm.run(self.sequence[None, :length], clean[None], use_cache=True)
        # transformers 5.x names it `cache`, older versions `past_key_values`
        self.keyword = (
            "cache"
            if "cache" in inspect.signature(lm.model.forward).parameters
            else ("past_key_values")
        )
        cache = getattr(output, self.keyword, None)
        self.cache: Any = cache if getattr(cache, "is_croppable", False) else None

    @property
    def usable(self) -> bool:
        """Whether the model returned a croppable cache."""
        return self.cache is not None

    def _after(self, start: int, blended: Tensor) -> Tensor:
        """Targets ``(B, S)`` of rows whose prompt embeddings ``(B, P, D)`` equal the clean
        ones before ``start``: positions ``start ..`` run on the cache cropped to ``start``."""
        rows, steps = blended.shape[0], self.continuation.steps
        cache = copy.deepcopy(self.cache)
        surplus = cache.get_seq_length() - start
        if surplus > 0:
            cache.crop(-surplus)  # a negative crop removes tokens (every transformers version)
        cache.batch_repeat_interleave(rows)
        ids = self.sequence[None, start:].expand(rows, -1)
        mask = torch.ones(rows, start + ids.shape[1], dtype=torch.long, device=ids.device)
        with self.lm.replaced_prompt(blended[:, start:]):
            output = self.lm.model(
                input_ids=ids,
                attention_mask=mask,
                **{self.keyword: cache},
                use_cache=True,
                logits_to_keep=steps + 1,
            )
        logits = logits_of_lm(output, ids[:, -(steps + 1) :])
        return tail_scores(logits, self.continuation.ids, self.continuation.contrast)

    def scores(self, blended: Tensor, first: Tensor, full: Callable[[Tensor], Tensor]) -> Tensor:
        """Targets ``(B, S)`` of prompt embeddings ``blended`` ``(B, P, D)`` whose first changed
        position is ``first`` ``(B,)`` (``P`` where none is); ``full(rows)`` scores rows that
        change position 0 without the cache."""
        prompt = blended.shape[1]
        start = first.clamp(max=prompt - 1)  # position P - 1 predicts the first step
        out = blended.new_empty(blended.shape[0], self.continuation.steps)
        for position in torch.unique(start).tolist():
            rows = (start == position).nonzero()[:, 0]
            out[rows] = (
                full(blended[rows]) if position == 0 else self._after(position, blended[rows])
            )
        return out
