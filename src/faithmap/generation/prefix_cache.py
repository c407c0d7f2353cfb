"""Reuse of the unchanged prompt prefix's key-value cache when perturbed prompts are scored.

A perturbed prompt equals the clean one up to its first removed token ``j``: a causal model's
keys and values at positions ``< j`` are those of the clean prompt. :class:`PrefixCache` runs
the clean prompt and continuation once with ``use_cache=True``, which also gives the clean
targets (a row that removes nothing costs no pass), and scores the other rows in groups: a group
runs from its smallest ``j`` on, its cache cropped there and repeated over the group's rows.
Splitting a batch into groups saves positions but costs calls (each reads every weight once,
which on a CPU costs about as much as :data:`CALL_POSITIONS` token positions of compute), so the
groups are chosen to minimise ``calls * CALL_POSITIONS + positions run``
(:func:`plan_groups`); rows ``j = 0`` run without the cache. Before a method's rows are
scored, the prefixes they share are run once when that saves positions (:meth:`PrefixCache.
share`, planned by :func:`plan_sharing`): with random coalitions (LIME, KernelSHAP) half the
rows change the first token, but the 16 keep patterns of the first 4 tokens cover them all, so
those rows continue from one of 16 short cached prefixes at position 4 instead of position 0.
Only Hugging Face models that trim their logits (``logits_to_keep``) and keep a croppable
cache take this path; the scores equal the uncached ones up to float rounding
(``tests/test_generation_methods.py`` and ``tests/test_generation_prefix_cache.py`` check
1e-5). The clean run and the shared prefixes' run (a few positions of at most a batch of rows)
are extra forward calls per explanation, not counted by :class:`faithmap.Model`, whose ledger
counts the coalitions.

References
----------
Pope et al., "Efficiently Scaling Transformer Inference", MLSys 2023 (the key-value cache);
Wolf et al., "Transformers", EMNLP 2020 (System Demonstrations): ``past_key_values``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from faithmap.generation.continuation import Continuation, tail_scores
from faithmap.generation.language_model import CausalLM, logits_of_lm

CALL_POSITIONS = 32
"""The fixed cost of one model call in token positions of one row. GPT-2 small (12 layers, one
CPU thread) runs a row of 24 positions alone in 1.9 times the time per position of a batch of 16,
a call cost of 21 positions (``benchmarks/generation_ab.py --profile``, load 7); the plan's cost
is flat near its optimum, and a GPU's call cost (kernel launches) is higher."""


def caches_prefix(lm: CausalLM) -> bool:
    """Whether ``lm`` can continue from a cached prefix (a Hugging Face model that trims its
    logits; its cache is checked to be croppable when first made)."""
    return bool(lm.hugging_face and lm.trims_logits)


def plan_groups(starts: list[int], length: int) -> list[int]:
    """Split rows sorted by ``starts`` (ascending) into contiguous groups, each run from its
    first row's start to ``length``: the indices where groups begin, minimising
    ``groups * CALL_POSITIONS + sum(rows * (length - start))`` (exact, by dynamic programming
    over the ``R`` rows, ``O(R^2)``)."""
    count = len(starts)
    best = [0.0] + [float("inf")] * count  # best[k]: cost of rows [0, k)
    cut = [0] * (count + 1)
    for stop in range(1, count + 1):
        for begin in range(stop):
            cost = best[begin] + CALL_POSITIONS + (stop - begin) * (length - starts[begin])
            if cost < best[stop]:
                best[stop], cut[stop] = cost, begin
    begins, stop = [], count
    while stop > 0:
        begins.append(cut[stop])
        stop = cut[stop]
    return begins[::-1]


class PrefixCache:
    """The clean sequence's key-value cache and the scoring of rows that continue from it.

    Parameters
    ----------
    lm : CausalLM
        A model for which :func:`caches_prefix` holds.
    continuation : Continuation
    clean : Tensor
        ``(P, D)`` the clean prompt's embeddings, as the rows blend them.

    Attributes
    ----------
    clean_scores : Tensor
        ``(S,)`` every step's target on the clean prompt.
    """

    def __init__(self, lm: CausalLM, continuation: Continuation, clean: Tensor) -> None:
        self.lm = lm
        self.continuation = continuation
        self.inputs = continuation.inputs.to(lm.device)
        steps = continuation.steps
        with torch.no_grad():
            output = lm.run(self.inputs[None], clean[None], use_cache=True, logits_to_keep=steps)
        logits = logits_of_lm(output, self.inputs[None, -steps:])
        self.clean_scores = tail_scores(logits, continuation.ids, continuation.contrast)[0]
        # transformers 5.x names it `cache`, older versions `past_key_values`
        self.keyword = (
            "cache"
            if "cache" in inspect.signature(lm.model.forward).parameters
            else ("past_key_values")
        )
        cache = getattr(output, self.keyword, None)
        self.cache: Any = cache if getattr(cache, "is_croppable", False) else None
        self.shared: SharedPrefixes | None = None

    @property
    def usable(self) -> bool:
        """Whether the model returned a croppable cache."""
        return self.cache is not None

    def share(self, token_keep: Tensor, blend: Callable[[Tensor], Tensor], most: int) -> None:
        """Plan and run the prefixes that the rows ``token_keep`` ``(C, P)`` about to be scored
        share (:func:`plan_sharing`): the distinct keep vectors of the first ``depth`` prompt
        positions run once, in one call of at most ``most`` rows, and the rows that change a
        position before ``depth`` continue from their prefix's cache at ``depth``. ``blend``
        maps token keep vectors ``(U, depth)`` to prompt embeddings ``(U, depth, D)``, as the
        rows blend them. Without a saving (feature ablation's rows share little) nothing runs."""
        self.shared = None
        prompt = token_keep.shape[1]
        first = first_changed_tokens(token_keep)
        starts = first[first < prompt].tolist()
        plan = plan_sharing(token_keep[first < prompt], starts, self.inputs.shape[0], most)
        if plan is None:
            return
        depth, prefixes = plan
        ids = self.inputs[None, :depth].expand(prefixes.shape[0], -1)
        with torch.no_grad(), self.lm.replaced_prompt(blend(prefixes)):
            output = self.lm.model(
                input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                logits_to_keep=1,
            )  # fmt: skip
        index = {tuple(row): k for k, row in enumerate(prefixes.tolist())}
        self.shared = SharedPrefixes(depth, index, getattr(output, self.keyword))

    def _after(self, start: int, blended: Tensor, keep: Tensor | None = None) -> Tensor:
        """Targets ``(B, S)`` of rows whose prompt embeddings ``(B, P, D)`` equal the clean
        ones before ``start``: positions ``start ..`` run on the cache cropped to ``start``; or,
        with their token keep vectors ``keep`` ``(B, P)``, rows that continue a shared prefix
        of ``start`` positions (:meth:`share`)."""
        rows, steps = blended.shape[0], self.continuation.steps
        if keep is not None:
            assert self.shared is not None and start == self.shared.depth
            index = self.shared.index
            which = [index[tuple(row)] for row in keep[:, :start].tolist()]
            cache = copy.deepcopy(self.shared.cache)
            cache.batch_select_indices(torch.tensor(which, device=blended.device))
        else:
            cache = copy.deepcopy(self.cache)
            cache.crop(start - cache.get_seq_length())  # a negative crop removes tokens
            cache.batch_repeat_interleave(rows)
        ids = self.inputs[None, start:].expand(rows, -1)
        mask = torch.ones(rows, start + ids.shape[1], dtype=torch.long, device=ids.device)
        with self.lm.replaced_prompt(blended[:, start:]):
            output = self.lm.model(
                input_ids=ids,
                attention_mask=mask,
                **{self.keyword: cache},
                use_cache=True,
                logits_to_keep=steps,
            )
        logits = logits_of_lm(output, ids[:, -steps:])
        return tail_scores(logits, self.continuation.ids, self.continuation.contrast)

    def scores(
        self,
        blended: Tensor,
        first: Tensor,
        full: Callable[[Tensor], Tensor],
        token_keep: Tensor | None = None,
    ) -> Tensor:
        """Targets ``(B, S)`` of prompt embeddings ``blended`` ``(B, P, D)`` whose first changed
        position is ``first`` ``(B,)`` (``P`` where none is); ``full(rows)`` scores rows without
        the cache. With shared prefixes (:meth:`share`) and the rows' token keep vectors
        ``token_keep`` ``(B, P)``, rows that change a position before the shared depth start
        there, on their prefix's cache."""
        prompt = blended.shape[1]
        out = self.clean_scores.to(blended.dtype).expand(blended.shape[0], -1).clone()
        depth = 0
        if self.shared is not None and token_keep is not None:
            depth = self.shared.depth
            first = torch.where(first < prompt, first.clamp(min=depth), first)
        sorted_first, order = first.sort(stable=True)
        changed = int((sorted_first < prompt).sum())
        starts: list[int] = sorted_first[:changed].tolist()
        begins = plan_groups(starts, self.inputs.shape[0])
        for begin, stop in zip(begins, [*begins[1:], changed][: len(begins)], strict=True):
            rows = order[begin:stop]
            start = starts[begin]
            if start == 0:
                out[rows] = full(blended[rows])
            elif start == depth and token_keep is not None:
                out[rows] = self._after(start, blended[rows], token_keep[rows])
            else:
                out[rows] = self._after(start, blended[rows])
        return out


@dataclass(frozen=True)
class SharedPrefixes:
    """The caches of the distinct prefixes of ``depth`` prompt positions (:meth:`PrefixCache.
    share`): ``index`` maps a prefix's token keep values to its row of ``cache``."""

    depth: int
    index: dict[tuple[float, ...], int]
    cache: Any


def first_changed_tokens(token_keep: Tensor) -> Tensor:
    """``(C,)`` the first prompt position each token keep vector ``(C, P)`` changes (``P``
    where it changes none)."""
    changed = token_keep != 1.0
    return torch.where(changed.any(dim=1), changed.int().argmax(dim=1), token_keep.shape[1])


def plan_sharing(
    token_keep: Tensor, starts: list[int], length: int, most: int
) -> tuple[int, Tensor] | None:
    """The depth ``d`` and the distinct prefixes ``(U, d)`` (the clean one included) that the
    rows ``token_keep`` ``(R, P)``, which change something first at ``starts``, share best:
    running the ``U`` prefixes once costs ``CALL_POSITIONS + U * d`` positions and saves
    ``d - start`` positions of each row that starts before ``d``, which then continues from
    its prefix at ``d``. ``None`` where no depth saves anything or every depth needs more
    than ``most`` prefixes. (The other calls are planned by :func:`plan_groups` as before.)"""
    if not starts:
        return None
    prompt = token_keep.shape[1]
    limit = min(prompt, length - 1)
    best, best_cost = None, 0.0
    clean = torch.ones(1, prompt, dtype=token_keep.dtype, device=token_keep.device)
    rows = torch.cat([clean, token_keep])
    for depth in range(1, limit + 1):
        before = [s for s in starts if s < depth]
        saved = sum(depth - s for s in before)
        prefixes = torch.unique(rows[:, :depth], dim=0)
        if prefixes.shape[0] > most:  # deeper prefixes are no fewer
            break
        cost = CALL_POSITIONS + prefixes.shape[0] * depth - saved
        if cost < best_cost:
            best, best_cost = (depth, prefixes), cost
    return best
