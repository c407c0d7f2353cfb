"""A small word classifier for the synthetic text task, and its shipped weights.

The classifier embeds each token, runs a width-3 convolution over the sequence, max-pools over
the kept positions and reads two logits: a text CNN (Kim 2014). :mod:`faithmap.text.train`
trains it on :func:`~faithmap.text.synthetic.make_sentences`; the weights it made ship in
``faithmap/text/weights/word_cnn.safetensors``.
"""

from __future__ import annotations

from importlib.resources import files

import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from faithmap.errors import FileProblemError
from faithmap.text.synthetic import LABELS, VOCABULARY


class WordCnn(nn.Module):
    """A one-layer text CNN: embedding, width-3 convolution, ReLU, masked max-pool, linear.

    Parameters
    ----------
    vocabulary : int
        Number of token ids.
    width : int, default=16
        Embedding size.
    channels : int, default=32
        Convolution channels.
    classes : int, default=2

    Attributes
    ----------
    class_names : tuple of str or None
        :data:`~faithmap.text.synthetic.LABELS` for the two classes of the synthetic task,
        ``None`` for another number of classes.

    References
    ----------
    Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014.
    """

    def __init__(
        self,
        vocabulary: int = len(VOCABULARY),
        width: int = 16,
        channels: int = 32,
        classes: int = 2,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, width)
        self.conv = nn.Conv1d(width, channels, 3, padding=1)
        self.head = nn.Linear(channels, classes)
        self.class_names = LABELS if classes == len(LABELS) else None

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding layer (the Hugging Face name for it)."""
        return self.embedding

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``(N, classes)`` of token ids ``(N, T)``; ``attention_mask`` 0 marks padding."""
        features = F.relu(self.conv(self.embedding(input_ids).transpose(1, 2)))
        if attention_mask is not None:
            features = features.masked_fill(~attention_mask.bool()[:, None, :], -torch.inf)
        logits: Tensor = self.head(features.amax(dim=2))
        return logits


def load_word_cnn() -> WordCnn:
    """The :class:`WordCnn` with faithmap's shipped weights, in eval mode, on the CPU."""
    weights = files("faithmap.text").joinpath("weights", "word_cnn.safetensors")
    if not weights.is_file():
        raise FileProblemError(
            f"The weights of the text classifier are missing ({weights}). Make them with "
            "`python -m faithmap.text.train --out src/faithmap/text/weights/word_cnn.safetensors`."
        )
    model = WordCnn()
    model.load_state_dict(load_safetensors(weights.read_bytes()))
    return model.eval()
