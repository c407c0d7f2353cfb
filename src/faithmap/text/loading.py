"""Text classifiers and their tokenizers from disk, for ``faithmap explain --text``."""

from __future__ import annotations

from typing import Any

from faithmap.errors import FileProblemError, MissingDependencyError


def load_text_classifier(spec: str) -> tuple[Any, Any]:
    """A Hugging Face sequence classifier and its fast tokenizer, from disk only.

    Parameters
    ----------
    spec : str
        A directory written by ``save_pretrained`` (model and tokenizer), or ``"hf:NAME"`` for a
        model in the Hugging Face cache. Nothing is downloaded and no remote code is run.

    Returns
    -------
    (model, tokenizer)
        The model in eval mode and its tokenizer.

    Raises
    ------
    MissingDependencyError
        If ``transformers`` is not installed.
    FileProblemError
        If the model or tokenizer is not on disk.

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020.
    """
    try:
        import transformers
    except ImportError as err:
        raise MissingDependencyError(
            f"Explaining the text classifier {spec!r} needs the transformers package. Install "
            'it with: pip install "faithmap[text]" (the built-in word_cnn needs nothing more).'
        ) from err
    name = spec.removeprefix("hf:")
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            name, local_files_only=True
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            name, local_files_only=True, use_fast=True
        )
    except (OSError, ValueError) as err:
        raise FileProblemError(
            f"No Hugging Face text classifier with its tokenizer at {spec!r} "
            f"({type(err).__name__}: {err}). Give a directory where model.save_pretrained(...) "
            "and tokenizer.save_pretrained(...) wrote, or 'hf:NAME' for a model in the Hugging "
            "Face cache."
        ) from err
    return model.eval(), tokenizer
