"""``explain_text``: token and word attributions of a text classifier's prediction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from faithmap.api import get_method
from faithmap.core.explanation import Explanation
from faithmap.core.model import Model
from faithmap.core.regions import Regions
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError
from faithmap.text.model import EmbeddingClassifier, baseline_token_id
from faithmap.text.tokens import TokenizedText, text_regions, tokenize

REMOVAL_PARAMS = ("fill", "baseline_tensor", "complement_fill")
"""Method parameters fixed by the text setting: a removed token is the baseline token."""


@dataclass(frozen=True)
class TextExplanation:
    """An explanation of one text, per token and per word.

    Attributes
    ----------
    explanation : Explanation
        The method's raw result on the embedding inputs: ``attributions`` ``(1, 1, T, 1)``
        (embedding channels reduced as the method's ``reduce`` says), ``ranking`` over the
        regions for subset-selection methods.
    tokens : TokenizedText
        The text, its tokens and words.
    regions : Regions
        The features removed by perturbation methods (label map ``(1, T, 1)``).
    token_scores : Tensor
        ``(T,)`` attribution of each token (zero-input special tokens included).
    word_scores : Tensor
        ``(W,)`` attribution of each word: the sum over its tokens for methods that attribute
        tokens (gradients), the value of its region for methods that attribute regions.
    model : Model
        The :class:`~faithmap.text.model.EmbeddingClassifier` of the text as a
        :class:`~faithmap.Model` (with its batch size), for the metrics
        (:func:`~faithmap.text.text_insertion`) and any other image-shaped metric.
    inputs : Tensor
        ``(1, D, T, 1)``: the text's input to ``model`` (embeddings minus the reference).
    method : str
        The method asked for (``"occlusion"`` runs as ``feature_ablation``, the name
        ``explanation.method`` records).
    probabilities : Tensor
        ``(C,)`` the model's class probabilities (softmax) on the whole text.
    class_names : tuple of str or None
        The name of each class, where known (a Hugging Face model's ``config.id2label``).
    """

    explanation: Explanation
    tokens: TokenizedText
    regions: Regions
    token_scores: Tensor
    word_scores: Tensor
    model: Model
    inputs: Tensor
    method: str
    probabilities: Tensor
    class_names: tuple[str, ...] | None = None

    @property
    def words(self) -> list[str]:
        """The words of the text, in order."""
        return self.tokens.words

    @property
    def predicted(self) -> int:
        """The class the model predicts for the text."""
        return int(self.probabilities.argmax())

    @property
    def target(self) -> int | None:
        """The class explained (``None`` for a callable target)."""
        target = self.explanation.target
        return None if target is None else int(target[0])

    def class_name(self, index: int) -> str:
        """``index`` in words: ``"positive (class 1)"``, or ``"class 1"`` without names."""
        names = self.class_names
        if names and 0 <= index < len(names):
            return f"{names[index]} (class {index})"
        return f"class {index}"

    @property
    def word_ranks(self) -> Tensor | None:
        """``(W,)`` the step at which a subset-selection method chose each word's region
        (1: chosen first, the most important); ``None`` for methods that give no ranking."""
        ranking = self.explanation.ranking
        if ranking is None:
            return None
        order = ranking[0].cpu()
        step = torch.empty_like(order)
        step[order] = torch.arange(1, order.numel() + 1)
        ordinary = self.tokens.word_of >= 0
        labels = self.regions.labels.reshape(-1).cpu()[ordinary]
        region_of_word = torch.zeros(len(self.words), dtype=torch.long)
        region_of_word[self.tokens.word_of[ordinary]] = labels
        return step[region_of_word]

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` words with the highest attribution, highest first."""
        order = self.word_scores.argsort(descending=True, stable=True)[:k]
        return [(self.words[int(i)], float(self.word_scores[i])) for i in order]


def _word_scores(token_scores: Tensor, tokens: TokenizedText, by_region: bool) -> Tensor:
    """Per-word sum (token attributions) or mean (painted region values) over ordinary tokens."""
    ordinary = tokens.word_of >= 0
    index = tokens.word_of[ordinary].to(token_scores.device)
    values = token_scores[ordinary.to(token_scores.device)].double()
    count = len(tokens.words)
    totals = torch.zeros(count, dtype=values.dtype, device=values.device).index_add_(
        0, index, values
    )
    if by_region:
        sizes = torch.zeros_like(totals).index_add_(0, index, torch.ones_like(values))
        totals = totals / sizes
    return totals.to(token_scores.dtype)


def explain_text(
    model: nn.Module | Model,
    tokenizer: Any,
    text: str,
    *,
    method: str = "integrated_gradients",
    target: TargetLike = None,
    regions: str = "words",
    baseline: str | int = "mask",
    embedding: str | None = None,
    batch_size: int | None = None,
    class_names: Sequence[str] | None = None,
    **params: Any,
) -> TextExplanation:
    """Explain a text classifier's output for one text, per token and per word.

    The model is run on its token embeddings (see :class:`~faithmap.text.model.
    EmbeddingClassifier`): gradient methods attribute the embeddings (summed over the
    embedding dimension per token) with the baseline-token embedding as baseline; perturbation
    methods remove whole ``regions`` (words, spans or tokens) by turning their tokens into the
    baseline token. Special tokens are never removed.

    Parameters
    ----------
    model : nn.Module or Model
        A Hugging Face sequence classifier, or any module taking ``input_ids`` and
        ``attention_mask`` and returning logits (a :class:`~faithmap.Model` wrapping one gives
        its module, and its batch size unless ``batch_size`` is set). It is left as it was.
    tokenizer : transformers.PreTrainedTokenizerFast
        Its fast tokenizer.
    text : str
    method : str, default="integrated_gradients"
        A registered method. Tested on text: ``integrated_gradients``, ``saliency``,
        ``input_x_gradient``, ``smoothgrad``, ``gradient_shap`` (token level);
        ``occlusion`` (one region at a time: run as ``feature_ablation``, whose name the
        explanation records), ``feature_ablation``, ``lime``, ``kernel_shap``, ``lima``.
    target : None, int or callable
        The class to explain (``None``: the predicted class).
    regions : {"words", "tokens"} or "spans:K", default="words"
        What perturbation methods remove at once (see :func:`~faithmap.text.text_regions`).
    baseline : {"mask", "pad"} or int, default="mask"
        The token a removed token becomes, and the baseline of path methods.
    embedding : str or None, default=None
        Dotted name of the embedding layer when the model has no ``get_input_embeddings``.
    batch_size : int or None, default=None
        Rows per model call (``None``: measured, see :class:`~faithmap.Model`).
    class_names : sequence of str or None, default=None
        The name of each class (``None``: the model's ``class_names`` attribute, as
        :class:`~faithmap.text.WordCnn` has, or a Hugging Face model's ``config.id2label``).
    **params
        The method's other parameters (``steps``, ``n_samples``, ``seed``, ...).

    Returns
    -------
    TextExplanation

    Examples
    --------
    >>> from faithmap.text import load_word_cnn, make_tokenizer
    >>> explained = explain_text(load_word_cnn(), make_tokenizer(), "the plot was superb",
    ...                          method="occlusion", batch_size=16)
    >>> explained.words, explained.top_words(1)[0][0]
    (['the', 'plot', 'was', 'superb'], 'superb')

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017;
    Zeiler, Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    """
    fixed = sorted(set(params) & set(REMOVAL_PARAMS))
    if fixed:
        raise InvalidParameterError(
            f"The parameter(s) {fixed} cannot be set for a text: a removed token becomes the "
            "baseline token. Choose it with baseline='mask', 'pad' or a token id."
        )
    tokens = tokenize(tokenizer, text)
    features = text_regions(tokens, regions)
    module: Any = model  # an nn.Module, checked by EmbeddingClassifier
    outputs: Literal["logits", "probabilities"] = "logits"
    if isinstance(model, Model):
        module, outputs = model.module, model.outputs_kind  # type: ignore[assignment]
        batch_size = model.batch_size if batch_size is None else batch_size
    classifier = EmbeddingClassifier(
        module, tokens, baseline_token_id(tokenizer, baseline), embedding=embedding
    )
    name = "feature_ablation" if method == "occlusion" else method
    probe = get_method(name, **params)
    by_region = "regions" in {f.name for f in fields(probe)}
    chosen = get_method(name, regions=features, **params) if by_region else probe
    wrapped = Model(classifier, batch_size=batch_size, outputs=outputs)
    explanation = chosen.explain(wrapped, classifier.inputs, target)
    probabilities = wrapped.outputs(classifier.inputs, activation="softmax")[0]
    values = explanation.attributions
    token_scores = (values.sum(1) if values.dim() == 4 else values).reshape(-1)
    return TextExplanation(
        explanation=explanation,
        tokens=tokens,
        regions=features,
        token_scores=token_scores,
        word_scores=_word_scores(token_scores, tokens, by_region),
        model=wrapped,
        inputs=classifier.inputs,
        method=method,
        probabilities=probabilities.detach(),
        class_names=_class_names(module) if class_names is None else tuple(class_names),
    )


def _class_names(module: Any) -> tuple[str, ...] | None:
    """The model's ``class_names`` attribute, or a Hugging Face model's ``config.id2label``;
    ``None`` when it has neither."""
    own = getattr(module, "class_names", None)
    if isinstance(own, tuple | list) and all(isinstance(name, str) for name in own):
        return tuple(own)
    labels = getattr(getattr(module, "config", None), "id2label", None)
    if not isinstance(labels, dict) or not labels:
        return None
    try:
        return tuple(str(labels[i]) for i in range(len(labels)))
    except KeyError:
        return None
