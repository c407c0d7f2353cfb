"""The battery's tiny models and data, and its constants."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.core.method import Method
from faithmap.core.model import Model

Check = Callable[[], None]
"""One check, ready to run: raises :class:`AssertionError` naming itself when it fails."""

SAMPLES, CHANNELS, SIZE, CLASSES, FEATURES = 5, 3, 16, 4, 8
"""The battery's data: five 3x16x16 images (or rows of eight columns) and four classes."""

ATOL, RTOL = 1e-5, 1e-4
"""Tolerances of the comparisons that allow float round-off (batching, one sample alone)."""

BATCH_SIZE = 64
"""The batch size of the checks that are not about batching (a measured size costs a timing run
per fresh model)."""

EXPLAINING_METHOD = "saliency"
"""The registered method whose explanations the metric battery scores (and re-explains)."""


class TinyCNN(nn.Module):
    """A small CNN with batch norm and dropout, so eval/train mode changes its output."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(CHANNELS, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(8, classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        logits: Tensor = self.head(self.dropout(pooled))
        return logits


class TinyMLP(nn.Module):
    """A small MLP on rows of ``FEATURES`` columns, for tabular metrics."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(torch.tanh(self.hidden(x)))
        return logits


class ConstantNet(nn.Module):
    """A model whose output ignores its input: ``1 / classes`` for every class.

    The output stays connected to the input in autograd (with zero gradient), so methods that
    differentiate it run; and its target score is ``1 / classes`` both as a logit and after a
    softmax, for any target, so a metric's ``"score"`` value does not depend on its activation.
    Its one layer has parameters (``reset_parameters``), for metrics that randomise layers.
    """

    def __init__(self, classes: int = CLASSES, channels: int = CHANNELS) -> None:
        super().__init__()
        self.classes = classes
        self.layer = nn.Linear(channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.flatten(2).mean(2) if x.dim() > 2 else x
        out: Tensor = self.layer(pooled[:, : self.layer.in_features]) * 0.0 + 1.0 / self.classes
        return out


class TinyViT(nn.Module):
    """A small vision transformer: 4 x 4 patches, a class token, two pre-norm blocks.

    Its attention is an ``nn.Softmax`` over ``(N, heads, T, T)`` scores; its MLPs use GELU; a
    dropout before the head makes eval/train mode change its output. Any ``H, W >= 4`` works
    (the position embedding is resized to the patch grid), for methods that need attention.
    """

    def __init__(self, classes: int = CLASSES, patch: int = 4, dim: int = 16) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(CHANNELS, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, dim, 4, 4) * 0.5)
        self.blocks = nn.ModuleList(_TinyBlock(dim) for _ in range(2))
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        patches = self.patch_embed(x)
        position = F.interpolate(self.pos_embed, size=patches.shape[-2:], mode="bilinear")
        tokens = (patches + position).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        logits: Tensor = self.head(self.dropout(tokens[:, 0]))
        return logits


class _TinyBlock(nn.Module):
    """``x + attention(norm(x))``, then ``x + mlp(norm(x))``, with two heads."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.softmax = nn.Softmax(dim=-1)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = self.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5)
        x = x + self.proj((attention @ v).transpose(1, 2).reshape(n, t, d))
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class FailsAfter(nn.Module):
    """Wraps a net and raises ``RuntimeError("simulated failure")`` from its ``n``-th call on."""

    def __init__(self, net: nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.calls, self.n = net, 0, n

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("simulated failure")
        out: Tensor = self.net(x)
        return out


def tiny_model(seed: int = 0) -> TinyCNN:
    """The battery's CNN, in eval mode, its weights and batch-norm statistics drawn from ``seed``.

    The global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyCNN()
        norm = net.features[1]
        assert isinstance(norm, nn.BatchNorm2d)
        assert norm.running_mean is not None and norm.running_var is not None
        with torch.no_grad():
            norm.running_mean.uniform_(-0.1, 0.1)
            norm.running_var.uniform_(0.5, 1.5)
    return net.eval()


def tiny_vit(seed: int = 0) -> TinyViT:
    """The battery's vision transformer, in eval mode, its weights drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyViT()
    return net.eval()


def model_for(method: type[Method], seed: int = 0) -> TinyCNN | TinyViT:
    """The battery's model for ``method``: :func:`tiny_vit` if it needs attention, else
    :func:`tiny_model`."""
    return tiny_vit(seed) if method.needs_attention else tiny_model(seed)


def tiny_mlp(seed: int = 0) -> TinyMLP:
    """The battery's MLP for tabular rows, in eval mode (global random state untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = TinyMLP()
    return net.eval()


def batched(net: nn.Module) -> Model:
    """``net`` in a :class:`Model` with the battery's fixed batch size."""
    return Model(net, batch_size=BATCH_SIZE)


def tiny_images(n: int = SAMPLES, seed: int = 1) -> Tensor:
    """``n`` random images ``(n, 3, 16, 16)`` in ``[0, 1)``, drawn from ``seed``."""
    return torch.rand(n, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def tiny_rows(n: int = SAMPLES, seed: int = 1) -> Tensor:
    """``n`` random tabular rows ``(n, 8)``, drawn from ``seed``."""
    return torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))


def tiny_masks(n: int = SAMPLES, seed: int = 2) -> Tensor:
    """Boolean object masks ``(n, 1, 16, 16)``: a 6x6 box per image at a position from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, SIZE - 6, (n, 2), generator=generator)
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    for i, (row, col) in enumerate(corners.tolist()):
        masks[i, 0, row : row + 6, col : col + 6] = True
    return masks


def tiny_row_masks(n: int = SAMPLES) -> Tensor:
    """Boolean relevant-column masks ``(n, 8)``: the first three columns."""
    masks = torch.zeros(n, FEATURES, dtype=torch.bool)
    masks[:, :3] = True
    return masks
