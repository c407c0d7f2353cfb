"""A small vision transformer for faithmap's built-in models.

Layers for class activation maps
--------------------------------
Each block returns the whole token sequence, shape ``(N, T, D)`` with ``T = 1 + h * w``: the
class token first, then the patch tokens in row-major order over the ``h x w = (H // 8) x
(W // 8)`` patch grid (8 x 8 for 64 x 64 images), so ``out[:, 1:].reshape(N, h, w, D)`` is the
token map. :meth:`SmallViT.patch_grid` gives ``(h, w)`` for an input size.

Use ``"blocks.2"``, the output of the second-to-last block (the input of the last one), for
gradient-weighted CAMs (Grad-CAM, Grad-CAM++, Layer-CAM). The logits read only the class token
of the last block's output, so the gradient of any logit with respect to the *patch* tokens of
``"blocks.3"`` is exactly zero; gradient-free CAMs (Score-CAM, Eigen-CAM) may use ``"blocks.3"``.
The attention probabilities of block ``i`` are the output of ``"blocks.i.attention.softmax"``,
shape ``(N, heads, T, T)``, for attention rollout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faithmap.zoo.architectures import normalise

__all__ = ["SelfAttention", "SmallViT", "TransformerBlock"]


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over a ``(N, T, D)`` token sequence.

    Parameters
    ----------
    dim : int
        Token width ``D``, divisible by `heads`.
    heads : int
        Number of attention heads.

    Attributes
    ----------
    qkv : nn.Linear
        Joint projection to queries, keys and values.
    softmax : nn.Softmax
        Normalises the scores over the keys; its output ``(N, heads, T, T)`` is the attention.
    proj : nn.Linear
        Output projection.

    References
    ----------
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.softmax = nn.Softmax(dim=-1)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``proj(softmax(q k^T / sqrt(d)) v)`` for every head, shape ``(N, T, D)``."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attention = self.softmax((q * self.scale) @ k.transpose(-2, -1))
        out = (attention @ v).transpose(1, 2).reshape(n, t, d)
        result: torch.Tensor = self.proj(out)
        return result


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: ``x + attention(norm1(x))``, then ``x + mlp(norm2(x))``.

    Parameters
    ----------
    dim : int
        Token width.
    heads : int
        Attention heads.
    hidden : int
        Width of the MLP's hidden layer.

    Attributes
    ----------
    norm1, norm2 : nn.LayerNorm
        Layer norms before the attention and the MLP.
    attention : SelfAttention
        The attention sub-layer.
    mlp : nn.Sequential
        Linear, GELU, linear.

    References
    ----------
    Xiong et al., "On Layer Normalization in the Transformer Architecture", ICML 2020.
    """

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the updated ``(N, T, D)`` token sequence."""
        x = x + self.attention(self.norm1(x))
        result: torch.Tensor = x + self.mlp(self.norm2(x))
        return result


class SmallViT(nn.Module):
    """A small vision transformer with a class token (about 151k parameters).

    Images are cut into 8 x 8 patches, each linearly embedded into 64 dimensions (an 8 x 8 grid
    of tokens at 64 x 64), a learned class token is prepended and a learned position embedding
    added; four pre-norm :class:`TransformerBlock` (4 heads, MLP width 128) follow, then a layer
    norm and a linear classifier on the class token. Inputs whose patch grid is not 8 x 8 (any
    ``H, W >= 8``; rows and columns beyond a multiple of 8 are ignored) get the position
    embedding resized bilinearly to their grid.

    Parameters
    ----------
    num_classes : int, default=6
        Number of output logits.

    Attributes
    ----------
    patch_embed : nn.Conv2d
        8 x 8 convolution with stride 8: the patch embedding.
    cls_token : nn.Parameter
        ``(1, 1, 64)`` class token.
    pos_embed : nn.Parameter
        ``(1, 65, 64)`` position embedding, the class token's first, then the 8 x 8 grid.
    blocks : nn.Sequential
        The transformer blocks ``blocks.0`` to ``blocks.3``, each mapping ``(N, T, D)`` to
        ``(N, T, D)``; see the module notes for the layer to give CAM methods (``"blocks.2"``).
    norm : nn.LayerNorm
        Final layer norm.
    head : nn.Linear
        Linear classifier on the class token.

    References
    ----------
    Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at
    Scale", ICLR 2021.
    """

    patch_size = 8
    grid = 8
    cam_layer = "blocks.2"
    """The layer CAM methods read by default: the last block's patch tokens get no gradient
    (the head reads only its class token), so the block before it."""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        dim, depth, heads, hidden = 64, 4, 4, 128
        self.patch_embed = nn.Conv2d(3, dim, self.patch_size, stride=self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + self.grid**2, dim) * 0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads, hidden) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """The ``(h, w)`` patch grid of ``height x width`` images: the token map's shape."""
        return height // self.patch_size, width // self.patch_size

    def _position(self, h: int, w: int) -> torch.Tensor:
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        cls, patches = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patches = patches.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the ``(N, num_classes)`` logits of ``(N, 3, H, W)`` images in ``[0, 1]``."""
        patches = self.patch_embed(normalise(x))
        h, w = patches.shape[-2:]
        tokens = patches.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self._position(h, w)
        tokens = self.norm(self.blocks(tokens))
        logits: torch.Tensor = self.head(tokens[:, 0])
        return logits
