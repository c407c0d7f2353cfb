"""Training of the synthetic text task's word classifier, in seconds.

Run as a script to (re)make the shipped weights::

    python -m faithmap.text.train --out src/faithmap/text/weights/word_cnn.safetensors

During training each token of :class:`~faithmap.text.classifier.WordCnn` is replaced by
``[MASK]`` with probability ``mask_rate``, so the mask token means "no word", the removal every
text explanation uses. Training takes a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from faithmap.core.validation import check_float, check_int
from faithmap.text.classifier import WordCnn
from faithmap.text.synthetic import VOCABULARY, make_sentences

MASK_ID = VOCABULARY.index("[MASK]")


def train_word_cnn(
    *, n_train: int = 2000, epochs: int = 6, mask_rate: float = 0.15, seed: int = 0
) -> WordCnn:
    """Train a :class:`WordCnn` on :func:`~faithmap.text.synthetic.make_sentences`.

    Deterministic given ``seed``: the sentences are ``make_sentences(n_train, seed=2 * seed)``
    and the initial weights and masking draws come from ``seed``. Takes a few seconds on a CPU.

    References
    ----------
    Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014;
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
    Understanding", NAACL 2019 (masking random input tokens during training).
    """
    check_int(n_train, "n_train", "train_word_cnn", low=2)
    check_int(epochs, "epochs", "train_word_cnn", low=1)
    check_float(mask_rate, "mask_rate", "train_word_cnn", low=0.0, high=1.0)
    check_int(seed, "seed", "train_word_cnn")
    generator = torch.Generator().manual_seed(seed)
    data = make_sentences(n_train, seed=2 * seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = WordCnn()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(n_train, generator=generator), 32):
            ids = data.ids[batch]
            masked = torch.rand(ids.shape, generator=generator) < mask_rate
            loss = F.cross_entropy(model(ids.masked_fill(masked, MASK_ID)), data.labels[batch])
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimiser.step()
    return model.eval()


def main(argv: Sequence[str] | None = None) -> None:
    """Train the text classifier and save its weights as safetensors."""
    parser = argparse.ArgumentParser(prog="python -m faithmap.text.train", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="path of the .safetensors file")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    model = train_word_cnn(seed=options.seed)
    held_out = make_sentences(1000, seed=2 * options.seed + 1)
    with torch.inference_mode():
        accuracy = float((model(held_out.ids).argmax(1) == held_out.labels).double().mean())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(options.out), metadata={"accuracy": f"{accuracy:.4f}"})
    print(f"word_cnn: held-out accuracy {accuracy:.4f}; saved to {options.out}")


if __name__ == "__main__":
    main()
