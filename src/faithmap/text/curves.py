"""Insertion and deletion over the words (or spans, tokens) of a text.

faithmap's :func:`~faithmap.metrics.insertion` and :func:`~faithmap.metrics.deletion` run
unchanged on the embedding inputs ``(1, D, T, 1)`` of :class:`~faithmap.text.model.
EmbeddingClassifier`: the unit is the text's region map, and the fill ``0.0`` is the baseline
token (the text model's offset makes it so). These helpers supply both, rank the units by the
explanation's word (or token) scores, and by default take one step per unit.

References
----------
Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018.
"""

from __future__ import annotations

from torch import Tensor

from faithmap.core.ordering import Order
from faithmap.core.readout import Activation
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_int
from faithmap.metrics.curves import CurveResult, deletion, insertion
from faithmap.text.explain import TextExplanation
from faithmap.text.tokens import nearest_ordinary, text_regions


def _ranking_map(explained: TextExplanation, unit: str) -> Tensor:
    """Per-token values ``(1, 1, T, 1)`` that rank the units: a token's own score for
    ``"tokens"``, its word's score otherwise; special tokens take their neighbour's."""
    tokens = explained.tokens
    nearest = nearest_ordinary(tokens.special).to(explained.token_scores.device)
    if unit == "tokens":
        values = explained.token_scores[nearest]
    else:
        words = tokens.word_of.to(nearest.device)[nearest]
        values = explained.word_scores[words]
    return values.view(1, 1, -1, 1)


def _text_curve(
    metric: str,
    explained: TextExplanation,
    *,
    unit: str,
    steps: int | None,
    target: TargetLike,
    activation: Activation,
    order: Order,
    seed: int,
) -> CurveResult:
    regions = text_regions(explained.tokens, unit)
    if steps is not None:
        check_int(steps, "steps", f"text_{metric}", low=1)
    curve = insertion if metric == "insertion" else deletion
    if target is None:
        target = explained.explanation.target
    return curve(
        explained.model,
        explained.inputs,
        _ranking_map(explained, unit),
        target=target,
        fill=0.0,
        steps=regions.count if steps is None else steps,
        seed=seed,
        activation=activation,
        unit=regions,
        order=order,
    )


def text_insertion(
    explained: TextExplanation,
    *,
    unit: str = "words",
    steps: int | None = None,
    target: TargetLike = None,
    activation: Activation = "softmax",
    order: Order = "morf",
    seed: int = 0,
) -> CurveResult:
    """Insertion over a text: its units put back into the all-baseline-token text, best first.

    Parameters
    ----------
    explained : TextExplanation
        From :func:`~faithmap.text.explain_text`.
    unit : {"words", "tokens"} or "spans:K", default="words"
        What is inserted at once; ranked by word (or token) scores.
    steps : int or None, default=None
        Curve points minus one; ``None``: one step per unit.
    target : None, int or callable
        ``None``: the class the explanation explained.
    activation : {"softmax", "logits"}, default="softmax"
    order : {"morf", "lerf", "random"}, default="morf"
    seed : int, default=0
        Tie-break (and ``"random"`` order) seed.

    Returns
    -------
    CurveResult
        Higher area is better (for ``"morf"``).

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018.
    """
    return _text_curve(
        "insertion",
        explained,
        unit=unit,
        steps=steps,
        target=target,
        activation=activation,
        order=order,
        seed=seed,
    )


def text_deletion(
    explained: TextExplanation,
    *,
    unit: str = "words",
    steps: int | None = None,
    target: TargetLike = None,
    activation: Activation = "softmax",
    order: Order = "morf",
    seed: int = 0,
) -> CurveResult:
    """Deletion over a text: its units turned into the baseline token, best first.

    Parameters are those of :func:`text_insertion`; lower area is better (for ``"morf"``).

    References
    ----------
    Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018.
    """
    return _text_curve(
        "deletion",
        explained,
        unit=unit,
        steps=steps,
        target=target,
        activation=activation,
        order=order,
        seed=seed,
    )
