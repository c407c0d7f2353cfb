"""Generation: which prompt tokens, words or sentences drove each token a language model generates.

:func:`explain_generation` explains a causal language model (:class:`CausalLM`: a Hugging Face
``AutoModelForCausalLM`` or any module or callable returning next-token logits) on a prompt and a
given or generated :class:`Continuation`. Every step's target is the log-probability of its
token (or contrastive, ``log p(A) - log p(B)``); the prompt's :class:`PromptFeatures` are removed
in embedding space; all steps are scored by one teacher-forced forward pass per perturbed
prompt. The result is a :class:`GenerationExplanation` with the ``(steps x features)`` matrix.
Methods are :class:`GenerationMethod` classes registered in :data:`GENERATION_METHODS`.
"""

from faithmap.generation.attention import GenerationAttention, GenerationAttentionRollout
from faithmap.generation.continuation import Continuation, make_continuation, step_scores
from faithmap.generation.explain import as_causal_lm, explain_generation
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.features import Prompt, PromptFeatures, make_prompt, prompt_features
from faithmap.generation.gradients import (
    GenerationInputXGradient,
    GenerationIntegratedGradients,
)
from faithmap.generation.language_model import CausalLM
from faithmap.generation.method import (
    GENERATION_METHODS,
    GenerationMethod,
    GenerationTask,
    get_generation_method,
    register_generation_method,
)
from faithmap.generation.perturbation import (
    GenerationFeatureAblation,
    GenerationKernelShap,
    GenerationLime,
)
from faithmap.generation.scoring import Baseline, EmbeddingScorer, KeepScorer, make_baseline

__all__ = [
    "GENERATION_METHODS",
    "Baseline",
    "CausalLM",
    "Continuation",
    "EmbeddingScorer",
    "GenerationAttention",
    "GenerationAttentionRollout",
    "GenerationExplanation",
    "GenerationFeatureAblation",
    "GenerationInputXGradient",
    "GenerationIntegratedGradients",
    "GenerationKernelShap",
    "GenerationLime",
    "GenerationMethod",
    "GenerationTask",
    "KeepScorer",
    "Prompt",
    "PromptFeatures",
    "as_causal_lm",
    "explain_generation",
    "get_generation_method",
    "make_baseline",
    "make_continuation",
    "make_prompt",
    "prompt_features",
    "register_generation_method",
    "step_scores",
]
