"""``explain_generation``: which prompt features drove each token a language model generates."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from faithmap.core.cost import Cost
from faithmap.generation.continuation import TokensLike, make_continuation
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.features import FeatureSpec, make_prompt, prompt_features
from faithmap.generation.language_model import CausalLM
from faithmap.generation.method import GenerationMethod, GenerationTask, get_generation_method
from faithmap.generation.scoring import BaselineSpec, make_baseline

LanguageModelLike = CausalLM | nn.Module | Callable[[Tensor], Any] | str | Path
"""A :class:`CausalLM`, a module or callable of token ids, or a local Hugging Face directory."""


def as_causal_lm(model: LanguageModelLike, tokenizer: Any = None) -> CausalLM:
    """``model`` as a :class:`CausalLM` (a directory is loaded with its tokenizer)."""
    if isinstance(model, CausalLM):
        if tokenizer is not None and model.tokenizer is None:
            return CausalLM(model.model, tokenizer=tokenizer)
        return model
    if isinstance(model, str | Path):
        lm = CausalLM.from_pretrained(model)
        return lm if tokenizer is None else CausalLM(lm.model, tokenizer=tokenizer)
    return CausalLM(model, tokenizer=tokenizer)


def explain_generation(
    model: LanguageModelLike,
    prompt: str | Tensor | list[int],
    *,
    method: str | GenerationMethod = "feature_ablation",
    tokenizer: Any = None,
    continuation: TokensLike | None = None,
    max_new_tokens: int = 16,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    contrast: TokensLike | int | None = None,
    features: FeatureSpec = "words",
    baseline: BaselineSpec = "zero",
    batch_size: int | None = None,
    **params: Any,
) -> GenerationExplanation:
    """Attribute each generated token of a causal language model to the prompt's features.

    Parameters
    ----------
    model : CausalLM, nn.Module, callable, str or Path
        A Hugging Face causal LM (instance, or local directory), a module mapping token ids
        ``(B, T)`` to logits ``(B, T, V)``, or a callable doing so (perturbation methods only).
    prompt : str, Tensor or list of int
        Text (needs the tokenizer) or token ids.
    method : str or GenerationMethod, default="feature_ablation"
        ``"feature_ablation"``, ``"kernel_shap"``, ``"lime"``, ``"integrated_gradients"``,
        ``"input_x_gradient"``, ``"attention"``, ``"attention_rollout"`` (see
        :data:`~faithmap.generation.method.GENERATION_METHODS`), or a configured method.
    tokenizer : object or None
        The model's Hugging Face fast tokenizer (a directory brings its own).
    continuation : str, Tensor or list of int, optional
        Explain these tokens (teacher forcing); by default ``max_new_tokens`` are generated,
        greedily, or sampled with ``seed`` (``sample=True``, ``temperature``).
    contrast : str, Tensor, list of int or int, optional
        Contrastive targets ``log p(token) - log p(contrast token)``, one id or one per step.
    features : {"words", "tokens", "sentences"}, list of (int, int) or Tensor, default="words"
        See :func:`~faithmap.generation.features.prompt_features`.
    baseline : {"zero", "pad", "unk", "eos"} or int, default="zero"
        What a removed prompt token becomes (an embedding; a token id for a plain callable).
    batch_size : int or None
        Rows per model call; ``None`` measures the fastest.
    **params
        The method's parameters (``steps``, ``n_samples``, ...), when ``method`` is a name.

    Returns
    -------
    GenerationExplanation
        ``attributions`` ``(S, F)``, ``scores`` ``(S,)``, the continuation, the features,
        the method's configuration and the cost: the method's passes, one pass scoring every
        step on the prompt, one pass per generated token when the continuation is generated,
        and the seconds of all of it.

    Examples
    --------
    >>> import torch
    >>> from faithmap.generation import explain_generation
    >>> lm = torch.nn.Sequential(torch.nn.Embedding(16, 8), torch.nn.Linear(8, 16))
    >>> exp = explain_generation(lm, [1, 2, 3], features="tokens", max_new_tokens=2)
    >>> exp.attributions.shape
    torch.Size([2, 3])
    """
    started = time.perf_counter()
    configured = method if isinstance(method, GenerationMethod) else None
    if configured is None:
        configured = get_generation_method(str(method), **params)
    lm = as_causal_lm(model, tokenizer)
    the_prompt = make_prompt(prompt, lm.tokenizer)
    followed = make_continuation(
        lm,
        the_prompt,
        continuation=continuation,
        max_new_tokens=max_new_tokens,
        sample=sample,
        temperature=temperature,
        seed=seed,
        contrast=contrast,
    )
    prompt_groups = prompt_features(the_prompt, features)
    task = GenerationTask(lm, followed, prompt_groups, make_baseline(lm, baseline), batch_size)
    attributions = configured.attribute(task).detach().float().cpu()
    scores = task.clean_scores().detach().float().cpu()
    generating = followed.steps if continuation is None else 0  # one pass per generated token
    passes = task.cost() + Cost(forward=1 + generating)
    config = {
        **configured.params(),
        "features": features if isinstance(features, str) else prompt_groups.kind,
        "baseline": baseline,
        "generated": followed.generated,
        "seed": seed,
    }
    seconds = time.perf_counter() - started
    return GenerationExplanation(
        attributions,
        scores,
        followed,
        prompt_groups,
        configured.name,
        config,
        Cost(passes.forward, passes.backward, seconds),
    )
