"""Generation: which prompt tokens, words or sentences drove each token a language model generates.

:func:`explain_generation` explains a causal language model (:class:`CausalLM`: a Hugging Face
``AutoModelForCausalLM`` or any module or callable returning next-token logits) on a prompt and a
given or generated :class:`Continuation`. Every step's target is the log-probability of its
token (or contrastive, ``log p(A) - log p(B)``); the prompt's :class:`PromptFeatures` are removed
in embedding space; all steps are scored by one teacher-forced forward pass per perturbed
prompt. The result is a :class:`GenerationExplanation` with the ``(steps x features)`` matrix.
Methods are :class:`GenerationMethod` classes registered in :data:`GENERATION_METHODS`.
:func:`evaluate_generation` scores explanations per step with :data:`GENERATION_METRICS`
(``faithmap.evaluate`` takes explanations of input batches and refuses these).
"""

from faithmap.generation.agreement import Agreement, agreement
from faithmap.generation.attention import GenerationAttention, GenerationAttentionRollout
from faithmap.generation.continuation import Continuation, make_continuation, step_scores
from faithmap.generation.evaluation import GENERATION_METRICS, evaluate_generation
from faithmap.generation.explain import as_causal_lm, explain_generation
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.faithfulness import (
    comprehensiveness,
    soft_comprehensiveness,
    soft_sufficiency,
    sufficiency,
)
from faithmap.generation.features import Prompt, PromptFeatures, make_prompt, prompt_features
from faithmap.generation.gpt import TinyGpt, load_gpt
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
from faithmap.generation.reagent import ReAGent
from faithmap.generation.resampling import SentenceResampling
from faithmap.generation.scoring import Baseline, EmbeddingScorer, KeepScorer, make_baseline
from faithmap.generation.step_curves import StepCurves, step_curves
from faithmap.generation.tasks import make_task

__all__ = [
    "GENERATION_METHODS",
    "GENERATION_METRICS",
    "Agreement",
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
    "ReAGent",
    "SentenceResampling",
    "StepCurves",
    "TinyGpt",
    "agreement",
    "as_causal_lm",
    "comprehensiveness",
    "evaluate_generation",
    "explain_generation",
    "get_generation_method",
    "load_gpt",
    "make_baseline",
    "make_continuation",
    "make_prompt",
    "make_task",
    "prompt_features",
    "register_generation_method",
    "soft_comprehensiveness",
    "soft_sufficiency",
    "step_curves",
    "step_scores",
    "sufficiency",
]
