"""The base of every generation attribution method, its registry, and what a method is given.

A :class:`GenerationMethod` is a frozen keyword-only dataclass of configuration (checked by the
same constraints as :class:`faithmap.core.method.Method`) whose one job is
:meth:`~GenerationMethod.attribute`: given a :class:`GenerationTask`, return the attribution
matrix ``(S, F)``, one row per generated step and one column per prompt feature. A method
registers under a name with :func:`register_generation_method`, and
:func:`faithmap.generation.explain_generation` finds it there.

The task runs the model only through :class:`faithmap.Model` (batching, pass counting): a
perturbation method hands it coalitions and gets the targets of every step from one forward pass
per coalition (:meth:`GenerationTask.score_keeps`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from faithmap.core.constraints import Constraints, validate_params
from faithmap.core.cost import Cost
from faithmap.core.model import Model
from faithmap.errors import UnknownNameError
from faithmap.generation.continuation import Continuation, tail_scores
from faithmap.generation.features import PromptFeatures
from faithmap.generation.language_model import CausalLM
from faithmap.generation.scoring import Baseline, EmbeddingScorer, KeepScorer

SHARED_PREFIX_ROWS = 64
"""At most this many shared prompt prefixes run in one call when no batch size is given
(:meth:`faithmap.generation.prefix_cache.PrefixCache.share`)."""


@dataclass
class GenerationTask:
    """A prompt, its continuation, its features and its baseline: what a method explains.

    Attributes
    ----------
    lm : CausalLM
    continuation : Continuation
    features : PromptFeatures
    baseline : Baseline
    batch_size : int or None
        Rows per model call (``None``: measured by :class:`faithmap.Model`).
    """

    lm: CausalLM
    continuation: Continuation
    features: PromptFeatures
    baseline: Baseline
    batch_size: int | None = None
    _models: dict[str, Model] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> int:
        """``S``, the number of generated steps."""
        return self.continuation.steps

    @property
    def device(self) -> torch.device:
        """The model's device, where every tensor of the task lives."""
        return self.lm.device

    def model(self, kind: str) -> Model:
        """The :class:`faithmap.Model` of the keep scorer (``"keep"``, rows ``(B, F)``) or of the
        embedding scorer (``"embedding"``, rows ``(B, P, D)``), made once."""
        if kind not in self._models:
            module: nn.Module
            if kind == "keep":
                module = KeepScorer(self.lm, self.continuation, self.features, self.baseline)
            else:
                self.lm.require_embeddings("This method")
                module = EmbeddingScorer(self.lm, self.continuation)
            self.adopt(kind, module)
        return self._models[kind]

    def adopt(self, kind: str, module: nn.Module, batch_size: int | None = None) -> Model:
        """A :class:`faithmap.Model` of another ``module`` a method runs (an attention reader,
        a replacement LM), counted in the task's cost, made once per ``kind``."""
        if kind not in self._models:
            self._models[kind] = Model(module, batch_size=batch_size or self.batch_size)
        return self._models[kind]

    def score_keeps(self, keep: Tensor) -> Tensor:
        """Targets ``(C, S)`` of every step with each feature keep vector ``(C, F)`` applied:
        one forward pass per coalition, in batches. Where the prompt's prefix is cached
        (:mod:`faithmap.generation.prefix_cache`) the coalitions are batched in the order of
        their first changed position, so that a batch's rows share long prefixes."""
        keep = keep.to(self.device, torch.float32)
        model = self.model("keep")
        scorer = model.module
        order = None
        if isinstance(scorer, KeepScorer) and scorer.prefix is not None:
            order = scorer.first_changed(keep).argsort(stable=True)
            keep = keep[order]
            scorer.share_prefixes(keep, self.batch_size or SHARED_PREFIX_ROWS)
        out: list[Tensor] = []

        def consume(_: Tensor, __: Tensor, output: Tensor) -> None:
            out.append(output.detach().clone())

        try:
            model.output_rows(
                1, keep.shape[0], lambda _, rows: keep[rows], consume, device=self.device
            )
        finally:
            if isinstance(scorer, KeepScorer):
                scorer.unshare()
        scores = torch.cat(out)
        if order is None:
            return scores
        return torch.empty_like(scores).index_copy_(0, order, scores)

    def clean_scores(self) -> Tensor:
        """``(S,)`` every step's target on the prompt: from the prefix cache's clean run when a
        perturbation method made one, else one forward pass."""
        scorer = self._models["keep"].module if "keep" in self._models else None
        if isinstance(scorer, KeepScorer) and scorer.prefix is not None:
            return scorer.prefix.clean_scores
        inputs = self.continuation.inputs.to(self.device)[None]
        with torch.no_grad():
            logits = self.lm.logits(inputs, last=self.steps)
        return tail_scores(logits, self.continuation.ids, self.continuation.contrast)[0]

    def prompt_embeddings(self) -> Tensor:
        """``(P, D)`` the prompt's own embeddings."""
        return self.lm.embed(self.continuation.prompt.ids)

    def baseline_embeddings(self) -> Tensor:
        """``(P, D)`` the fully removed prompt: the baseline embedding at every token a feature
        holds, the token's own embedding elsewhere."""
        own = self.prompt_embeddings()
        assert self.baseline.embedding is not None  # a module's baseline has its embedding
        removed = (self.features.labels >= 0).to(own.device)[:, None]
        return torch.where(removed, self.baseline.embedding.to(own.dtype), own)

    def cost(self) -> Cost:
        """The passes counted so far by the task's models (seconds are measured by the caller)."""
        total = Cost()
        for model in self._models.values():
            total = total + model.ledger.snapshot()
        return total


class GenerationMethod(ABC):
    """An attribution method for generation; see the module docstring."""

    name: ClassVar[str]
    parameter_constraints: ClassVar[Constraints] = {}

    def __post_init__(self) -> None:
        validate_params(self.params(), self.parameter_constraints, type(self).__name__)

    def params(self) -> dict[str, Any]:
        """Every field by name: the configuration an explanation records."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @abstractmethod
    def attribute(self, task: GenerationTask) -> Tensor:
        """The attribution matrix ``(S, F)`` of ``task``."""


GENERATION_METHODS: dict[str, type[GenerationMethod]] = {}
"""Registered generation methods by name."""

M = TypeVar("M", bound=type[GenerationMethod])


def register_generation_method(name: str) -> Callable[[M], M]:
    """Class decorator registering a :class:`GenerationMethod` under ``name``."""

    def register(cls: M) -> M:
        cls.name = name
        GENERATION_METHODS[name] = cls
        return cls

    return register


def get_generation_method(name: str, **params: Any) -> GenerationMethod:
    """The registered generation method ``name`` configured with ``params``."""
    if name not in GENERATION_METHODS:
        raise UnknownNameError(
            f"No generation method is named {name!r}. Choose one of "
            f"{', '.join(sorted(GENERATION_METHODS))}."
        )
    return GENERATION_METHODS[name](**params)
