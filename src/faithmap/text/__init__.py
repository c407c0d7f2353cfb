"""Text: token and word attributions for Hugging Face (and other) sequence classifiers.

:func:`explain_text` explains one text with any registered method, through the model's token
embeddings (:class:`EmbeddingClassifier`); :func:`render_terminal` and :func:`render_html`
show the result as highlighted text (:func:`prediction_line` and :func:`legend_lines` say what
it shows); :func:`text_insertion` and :func:`text_deletion` score it.
:func:`load_word_cnn` gives a small classifier of the synthetic task :func:`make_sentences`
(trained by :func:`faithmap.text.train.train_word_cnn`), whose tokenizer
(:func:`make_tokenizer`, a :class:`WordTokenizer`) is plain Python. Other models need a Hugging
Face fast tokenizer (``pip install "faithmap[text]"``).
"""

from faithmap.text.classifier import WordCnn, load_word_cnn
from faithmap.text.curves import text_deletion, text_insertion
from faithmap.text.explain import TextExplanation, explain_text
from faithmap.text.loading import load_text_classifier
from faithmap.text.model import EmbeddingClassifier, embedding_layer
from faithmap.text.render import legend_lines, prediction_line, render_html, render_terminal
from faithmap.text.synthetic import SyntheticText, make_sentences, make_tokenizer
from faithmap.text.tokens import TokenizedText, text_regions, tokenize
from faithmap.text.word_tokenizer import WordTokenizer

__all__ = [
    "EmbeddingClassifier",
    "SyntheticText",
    "TextExplanation",
    "TokenizedText",
    "WordCnn",
    "WordTokenizer",
    "embedding_layer",
    "explain_text",
    "legend_lines",
    "load_text_classifier",
    "load_word_cnn",
    "make_sentences",
    "make_tokenizer",
    "prediction_line",
    "render_html",
    "render_terminal",
    "text_deletion",
    "text_insertion",
    "text_regions",
    "tokenize",
]
