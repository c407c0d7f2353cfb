"""Hit rates: how often a method's top prompt feature is one the answer truly depends on.

On the synthetic tasks (:mod:`faithmap.generation.tasks`) every generated step comes with the
prompt positions its answer depends on. A step is a *hit* when the feature of largest
attribution holds one of them. :func:`hit_rates` explains fresh seeded examples of each task
that the model answers correctly (the dependencies are those of the answer; a model that gets
an example wrong reads something else) with each method, teacher-forcing the answer, with the
prompt's content tokens as features (:func:`~faithmap.generation.tasks.content_features`:
removing the task name or punctuation breaks the format, not the content), and reports the
share of hits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from faithmap.core.validation import check_int
from faithmap.errors import FaithmapError, ShapeError
from faithmap.generation.explain import LanguageModelLike, as_causal_lm, explain_generation
from faithmap.generation.explanation import GenerationExplanation
from faithmap.generation.method import GenerationMethod
from faithmap.generation.tasks import MASK_ID, TASKS, content_features, make_task


def top_feature_hits(
    explanation: GenerationExplanation, dependencies: Sequence[Sequence[int]]
) -> Tensor:
    """``(S,)`` whether each step's top feature holds a prompt position of
    ``dependencies[step]`` (ties go to the first feature)."""
    steps = explanation.continuation.steps
    if len(dependencies) != steps:
        raise ShapeError(
            f"top_feature_hits needs the dependencies of each of the {steps} steps. Got "
            f"{len(dependencies)}."
        )
    labels = explanation.features.labels.cpu()
    top = explanation.attributions.argmax(dim=1).cpu()
    hits = [
        bool(set((labels == int(top[t])).nonzero()[:, 0].tolist()) & set(dependencies[t]))
        for t in range(steps)
    ]
    return torch.tensor(hits)


def hit_rates(
    model: LanguageModelLike,
    methods: Mapping[str, GenerationMethod | str],
    *,
    tasks: Sequence[str] = TASKS,
    n: int = 16,
    seed: int = 2_000_000,
    baseline: str | int = MASK_ID,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = 64,
) -> dict[str, dict[str, float | str]]:
    """Share of steps whose top feature is a true dependency, per task and method.

    Parameters
    ----------
    model : the built-in GPT or another LM over :data:`~faithmap.generation.tasks.VOCABULARY`
    methods : mapping of name to method or registered method name
    tasks : sequence of str, default all
    n : int, default=16
        Examples per task, ``make_task(task, n, seed=seed)``.
    seed : int, default=2_000_000
        Fresh examples: the shipped weights' training drew seeds ``1 .. 1500``, their recorded
        held-out accuracy ``10**6``.
    baseline : str or int, default the ``[MASK]`` token
        Removal for the methods that remove features (the built-in GPT learnt ``[MASK]`` as
        "no word").
    params : mapping, optional
        Parameters per method name, for methods given by name.
    batch_size : int or None, default=64
        Rows per model call (``None`` measures the fastest for every explanation).

    Returns
    -------
    dict
        ``{task: {method: rate}}`` over the examples the model solves (greedy continuation equal
        to the answer; their share under ``"solved"``, ``nan`` rates when none is); a method that
        refuses the model gets its error's message instead of a rate.

    References
    ----------
    Arras, Osman, Samek, "CLEVR-XAI", Information Fusion 81, 2022 (relevance against known
    ground truth); Zhao and Shan, "ReAGent", 2024 (known-dependency checks of generation
    attributions).
    """
    check_int(n, "n", "hit_rates", low=1)
    table: dict[str, dict[str, float | str]] = {}
    for task in tasks:
        data = make_task(task, n, seed=seed)
        lm = as_causal_lm(model)
        answered = [
            bool(
                torch.equal(
                    lm.generate(data.prompts[i], data.answers.shape[1]).cpu(), data.answers[i]
                )
            )
            for i in range(n)
        ]
        table[task] = {"solved": sum(answered) / n}
        for name, method in methods.items():
            extra = dict((params or {}).get(name, {})) if isinstance(method, str) else {}
            hits: list[Tensor] = []
            try:
                for i in (i for i in range(n) if answered[i]):
                    exp = explain_generation(
                        model,
                        data.prompts[i],
                        method=method,
                        continuation=data.answers[i],
                        features=content_features(data.prompts[i]),
                        baseline=baseline,
                        batch_size=batch_size,
                        **extra,
                    )
                    hits.append(top_feature_hits(exp, data.dependencies[i]))
            except FaithmapError as err:
                table[task][name] = f"{type(err).__name__}: {err}"
                continue
            table[task][name] = float(torch.cat(hits).double().mean()) if hits else float("nan")
    return table
