"""faithmap's tiny GPT for the synthetic generation tasks, and its shipped weights.

:class:`TinyGpt` is a decoder-only transformer (pre-layer-norm blocks of causal self-attention
and an MLP, learned positions, a language-model head) in plain torch: it loads in milliseconds
and needs no ``transformers``. :mod:`faithmap.generation.train` trains it on
:func:`~faithmap.generation.tasks.make_task`; the weights it made ship in
``faithmap/generation/weights/gpt.safetensors`` and :func:`load_gpt` loads them. The held-out
accuracy of the shipped weights, per task, is in the file's metadata (:func:`gpt_accuracy`) and
in the README.
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib.resources import files

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load as load_safetensors
from torch import Tensor, nn

from faithmap.errors import FileProblemError, ShapeError
from faithmap.generation.tasks import VOCABULARY

SHIFT = 3
"""Width of each block's causal depthwise convolution: a position and its two predecessors."""


class Block(nn.Module):
    """One pre-layer-norm transformer block: causal multi-head self-attention, then an MLP.

    The attention's queries, keys and values read each position mixed with its two
    predecessors by a causal depthwise convolution (kernel 3; the "shift" of H3, Fu et al.,
    ICLR 2023): a value then carries the key two tokens before it, so one attention layer can
    bind keys to values (key-value retrieval is not learnt without it).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.shift = nn.Conv1d(width, width, SHIFT, groups=width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def _split(self, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, length = hidden.shape[:2]
        normed = self.norm1(hidden).transpose(1, 2)
        shifted = self.shift(F.pad(normed, (SHIFT - 1, 0))).transpose(1, 2)  # causal
        parts = self.qkv(shifted).view(batch, length, 3, self.heads, -1)
        q, k, v = parts.permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(self, hidden: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """The block's output and its attention weights."""
        batch, length, width = hidden.shape
        q, k, v = self._split(hidden)
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.heads)
        weights = scores.masked_fill(~keep[:, None], -torch.inf).softmax(dim=-1)
        mixed = (weights @ v).transpose(1, 2).reshape(batch, length, width)
        hidden = hidden + self.proj(mixed)
        return hidden + self.mlp(self.norm2(hidden)), weights


class TinyGpt(nn.Module):
    """A small decoder-only transformer returning next-token logits ``(B, T, V)``.

    Parameters
    ----------
    vocabulary : int
        Number of token ids.
    width : int, default=64
    layers : int, default=2
    heads : int, default=4
    context : int, default=32
        Longest sequence (learned positions).

    References
    ----------
    Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019 (the
    pre-layer-norm decoder); Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(
        self,
        vocabulary: int = len(VOCABULARY),
        width: int = 64,
        layers: int = 2,
        heads: int = 4,
        context: int = 32,
    ) -> None:
        super().__init__()
        self.context = context
        self.embedding = nn.Embedding(vocabulary, width)
        self.positions = nn.Parameter(torch.zeros(context, width))
        nn.init.normal_(self.positions, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary, bias=False)

    def get_input_embeddings(self) -> nn.Module:
        """The token embedding layer (the Hugging Face name for it)."""
        return self.embedding

    def _run(
        self, input_ids: Tensor | None, attention_mask: Tensor | None, inputs_embeds: Tensor | None
    ) -> tuple[Tensor, list[Tensor]]:
        if (input_ids is None) == (inputs_embeds is None):
            raise ShapeError("TinyGpt takes exactly one of input_ids and inputs_embeds.")
        hidden = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        length = hidden.shape[1]
        if length > self.context:
            raise ShapeError(
                f"TinyGpt reads at most {self.context} tokens. Got a sequence of {length}; "
                "shorten the prompt or the continuation."
            )
        hidden = hidden + self.positions[:length]
        keep = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
        keep = keep.expand(hidden.shape[0], length, length)
        if attention_mask is not None:
            keep = keep & attention_mask.bool()[:, None, :]
        weights = []
        for block in self.blocks:
            hidden, attention = block(hidden, keep)
            weights.append(attention)
        return self.head(self.norm(hidden)), weights

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
    ) -> Tensor:
        """Next-token logits ``(B, T, V)`` of token ids ``(B, T)`` or embeddings ``(B, T, D)``;
        ``attention_mask`` ``(B, T)`` with 0 at positions no token may attend to."""
        logits, _ = self._run(input_ids, attention_mask, inputs_embeds)
        return logits

    def attentions(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> list[Tensor]:
        """Each layer's attention weights ``(B, heads, T, T)`` (rows: queries, sum to 1)."""
        return self._run(input_ids, attention_mask, None)[1]


def _weights_path() -> str:
    weights = files("faithmap.generation").joinpath("weights", "gpt.safetensors")
    if not weights.is_file():
        raise FileProblemError(
            f"The weights of the built-in GPT are missing ({weights}). Make them with "
            "`python -m faithmap.generation.train --out src/faithmap/generation/weights/"
            "gpt.safetensors`."
        )
    return str(weights)


def load_gpt() -> TinyGpt:
    """The :class:`TinyGpt` with faithmap's shipped weights, in eval mode, on the CPU."""
    model = TinyGpt()
    with open(_weights_path(), "rb") as handle:
        model.load_state_dict(load_safetensors(handle.read()))
    return model.eval()


def gpt_accuracy() -> dict[str, float]:
    """The shipped GPT's accuracy per task on held-out examples, as measured when it was
    trained (exact match of the whole greedy continuation)."""
    with safe_open(_weights_path(), framework="pt") as handle:
        metadata = handle.metadata()
    accuracy: dict[str, float] = json.loads(metadata["accuracy"])
    return accuracy


def weights_digest() -> str:
    """The SHA-256 of the shipped weights' file (a benchmark run names the weights it used)."""
    with open(_weights_path(), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def greedy(model: nn.Module, prompts: Tensor, steps: int) -> Tensor:
    """The ``(N, steps)`` greedy continuation of ``prompts`` ``(N, P)``."""
    sequence = prompts
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(sequence)[:, -1]
            sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    return sequence[:, prompts.shape[1] :]
