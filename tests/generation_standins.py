"""Small language models with a known dependency, for the generation method tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PointerLm(nn.Module):
    """From position ``source`` on, predicts the token at ``source`` with logit ``strength``
    (all others 0); before it, every token is equally likely. Causal by construction."""

    def __init__(self, source: int, vocabulary: int = 10, strength: float = 30.0) -> None:
        super().__init__()
        self.source = source
        self.strength = strength
        self.embedding = nn.Embedding(vocabulary, 1)

    def forward(self, ids: Tensor) -> Tensor:
        self.embedding(ids)  # the embedding layer runs, as in any LM
        logits = torch.zeros(*ids.shape, self.embedding.num_embeddings)
        if ids.shape[1] > self.source:
            pointed = nn.functional.one_hot(ids[:, self.source], self.embedding.num_embeddings)
            logits[:, self.source :] = self.strength * pointed[:, None].float()
        return logits


class ConstantLm(nn.Module):
    """Logits ``-token id`` at every position: token 0 is the most likely, then 1, 2, ..."""

    def __init__(self, vocabulary: int = 10) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, 1)

    def forward(self, ids: Tensor) -> Tensor:
        self.embedding(ids)
        ranks = -torch.arange(self.embedding.num_embeddings, dtype=torch.float32)
        return ranks.expand(*ids.shape, -1).clone()
