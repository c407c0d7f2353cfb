"""Text: token and word attributions for Hugging Face (and other) sequence classifiers.

:func:`explain_text` explains one text with any registered method, through the model's token
embeddings (:class:`EmbeddingClassifier`); :func:`render_terminal` and :func:`render_html`
show the result as highlighted text; :func:`text_insertion` and :func:`text_deletion` score it.
:func:`load_word_cnn` gives a small classifier of the synthetic task :func:`make_sentences`
(trained by :func:`faithmap.text.train.train_word_cnn`).
Tokenisation needs a Hugging Face fast tokenizer (``pip install faithmap[text]``).
"""

from faithmap.text.classifier import WordCnn, load_word_cnn
from faithmap.text.curves import text_deletion, text_insertion
from faithmap.text.explain import TextExplanation, explain_text
from faithmap.text.loading import load_text_classifier
from faithmap.text.model import EmbeddingClassifier, embedding_layer
from faithmap.text.render import render_html, render_terminal
from faithmap.text.synthetic import SyntheticText, make_sentences, make_tokenizer
from faithmap.text.tokens import TokenizedText, text_regions, tokenize

__all__ = [
    "EmbeddingClassifier",
    "SyntheticText",
    "TextExplanation",
    "TokenizedText",
    "WordCnn",
    "embedding_layer",
    "explain_text",
    "load_text_classifier",
    "load_word_cnn",
    "make_sentences",
    "make_tokenizer",
    "render_html",
    "render_terminal",
    "text_deletion",
    "text_insertion",
    "text_regions",
    "tokenize",
]
