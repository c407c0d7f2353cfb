"""Attention rollout, gradient-weighted attention (Chefer et al.) and Guided Backprop on GELU.

Expected values are computed independently here: rollout with explicit numpy loops from
attention matrices the test sets, Chefer's relevance from gradients taken by plain autograd
(``retain_grad`` on each block's softmax), guided gradients of GELU/SiLU from their closed-form
derivatives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle
from transformers import ViTConfig, ViTForImageClassification

import faithmap
from faithmap import Model
from faithmap.errors import InvalidParameterError, ModelError, ShapeError
from faithmap.methods.attention import token_maps
from faithmap.testing import tiny_model, tiny_vit
from faithmap.zoo.libraries import HuggingFaceLogits
from faithmap.zoo.vit import SmallViT


class SoftmaxOutputs:
    """Within the block, the outputs of every ``nn.Softmax`` module of ``net``, in call order."""

    def __init__(self, net: nn.Module) -> None:
        self.modules = [m for m in net.modules() if isinstance(m, nn.Softmax)]
        self.outputs: list[torch.Tensor] = []
        self.handles: list[RemovableHandle] = []

    def keep(self, _: nn.Module, __: Any, output: torch.Tensor) -> None:
        self.outputs.append(output)

    def __enter__(self) -> list[torch.Tensor]:
        self.handles = [m.register_forward_hook(self.keep) for m in self.modules]
        return self.outputs

    def __exit__(self, *_: object) -> None:
        for handle in self.handles:
            handle.remove()


class KnownAttention(nn.Module):
    """A one-pixel-patch "transformer" whose attention is ``softmax(scores[l])``, set by the test.

    Tokens: ``prefix`` leading tokens (the class token first), then one per pixel in row-major
    order. Block ``l`` adds the heads' mean of ``softmax(scores[l]) @ tokens``; the logits read
    the class token.
    """

    def __init__(self, scores: torch.Tensor, prefix: int = 1) -> None:
        super().__init__()
        self.scores = nn.Parameter(scores)
        self.prefix = nn.Parameter(torch.linspace(-1, 1, prefix * 4).reshape(1, prefix, 4))
        self.embed = nn.Linear(3, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        tokens = self.embed(x.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.prefix.expand(n, -1, -1), tokens], dim=1)
        for scores in self.scores:
            attention = torch.softmax(scores.expand(n, -1, -1, -1), dim=-1)
            tokens = tokens + (attention @ tokens.unsqueeze(1)).mean(1)
        logits: torch.Tensor = self.head(tokens[:, 0])
        return logits


def known_model(tokens: int, prefix: int = 1, layers: int = 3, heads: int = 2) -> KnownAttention:
    generator = torch.Generator().manual_seed(tokens + layers)
    scores = 2 * torch.randn(layers, heads, tokens, tokens, generator=generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return KnownAttention(scores.double(), prefix).double().eval()


def numpy_softmax(scores: np.ndarray) -> np.ndarray:
    shifted: np.ndarray = np.exp(scores - scores.max(-1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(-1, keepdims=True)
    return probabilities


def loop_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = a.shape[0]
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            out[i, j] = float(np.dot(a[i], b[:, j]))
    return out


def numpy_rollout(attentions: list[np.ndarray], fusion: str, discard: float) -> np.ndarray:
    """Abnar and Zuidema's rollout by hand: fuse, discard, 0.5 A + 0.5 I, rows to 1, multiply."""
    size = attentions[0].shape[-1]
    result = np.eye(size)
    for attention in attentions:
        fused = {"mean": attention.mean(0), "max": attention.max(0), "min": attention.min(0)}
        flat = fused[fusion].flatten().copy()
        for index in np.argsort(flat, kind="stable")[: int(flat.size * discard)]:
            if index != 0:  # the class token's attention to itself stays
                flat[index] = 0.0
        mixed = np.empty((size, size))
        for i in range(size):
            row = 0.5 * flat.reshape(size, size)[i] + 0.5 * (np.arange(size) == i)
            mixed[i] = row / row.sum()
        result = loop_matmul(mixed, result)
    class_row: np.ndarray = result[0]
    return class_row


@pytest.mark.parametrize(
    ("fusion", "discard"), [("mean", 0.0), ("max", 0.0), ("min", 0.0), ("mean", 0.6)]
)
def test_rollout_equals_the_hand_computed_rollout(fusion: str, discard: float) -> None:
    height, width = 3, 4
    net = known_model(1 + height * width)
    x = torch.rand(2, 3, height, width, dtype=torch.float64)
    result = faithmap.explain(
        net, x, method="attention_rollout", head_fusion=fusion, discard_ratio=discard
    )
    attentions = [numpy_softmax(s) for s in net.scores.detach().numpy()]
    expected = numpy_rollout(attentions, fusion, discard)[1:].reshape(height, width)
    for i in range(2):  # the attention does not depend on the image here
        np.testing.assert_allclose(result.attributions[i, 0].numpy(), expected, rtol=1e-12)


def test_rollout_skips_register_tokens_and_infers_them() -> None:
    height, width, prefix = 3, 4, 3
    net = known_model(prefix + height * width, prefix=prefix)
    x = torch.rand(1, 3, height, width, dtype=torch.float64)
    inferred = faithmap.explain(net, x, method="attention_rollout")
    declared = faithmap.explain(net, x, method="attention_rollout", prefix_tokens=prefix)
    attentions = [numpy_softmax(s) for s in net.scores.detach().numpy()]
    expected = numpy_rollout(attentions, "mean", 0.0)[prefix:].reshape(height, width)
    np.testing.assert_allclose(inferred.attributions[0, 0].numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(inferred.attributions, declared.attributions, rtol=0, atol=0)
    with pytest.raises(ShapeError, match=r"prefix_tokens=\.\.\."):
        faithmap.explain(net, x, method="attention_rollout", prefix_tokens=5)


def test_more_leading_tokens_than_inferred_must_be_declared() -> None:
    height, width, prefix = 3, 4, 18  # inference drops at most 16 after the class token
    net = known_model(prefix + height * width, prefix=prefix, layers=1)
    x = torch.rand(1, 3, height, width, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"30 tokens.*prefix_tokens=\.\.\."):
        faithmap.explain(net, x, method="attention_rollout")
    declared = faithmap.explain(net, x, method="attention_rollout", prefix_tokens=prefix)
    attentions = [numpy_softmax(s) for s in net.scores.detach().numpy()]
    expected = numpy_rollout(attentions, "mean", 0.0)[prefix:].reshape(height, width)
    np.testing.assert_allclose(declared.attributions[0, 0].numpy(), expected, rtol=1e-12)


def test_token_rows_are_laid_out_row_by_row_on_a_non_square_grid() -> None:
    rows = torch.arange(9, dtype=torch.float64).unsqueeze(0)  # class token, then 2 x 4 patches
    maps = token_maps(rows, (2, 4), None)
    assert maps.tolist() == [[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]]]
    wide = token_maps(torch.rand(1, 1 + 6 * 24), (48, 192), None)  # SmallViT's grid at 48x192
    assert wide.shape == (1, 1, 48, 192)


def test_chefer_relevance_equals_an_independent_computation() -> None:
    """R = I; R += mean_h(max(grad A * A, 0)) R per block, gradients from plain autograd."""
    height, width = 3, 5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        net = tiny_vit().double()
    net.patch_embed = nn.Conv2d(3, 16, 1).double()  # one token per pixel: no upsampling
    x = torch.rand(2, 3, height, width, dtype=torch.float64)
    targets = [1, 2]
    result = faithmap.explain(net, x, method="attention_gradient", target=targets)
    for i, target in enumerate(targets):
        with SoftmaxOutputs(net) as kept:
            logits = net(x[i : i + 1])
        for attention in kept:
            attention.retain_grad()
        logits[0, target].backward()
        size = kept[0].shape[-1]
        relevance = np.eye(size)
        for attention in kept:
            assert attention.grad is not None
            product = (attention.grad[0] * attention[0]).detach().numpy()
            weighted = np.maximum(product, 0).mean(0)
            relevance = relevance + loop_matmul(weighted, relevance)
        expected = relevance[0, 1:].reshape(height, width)
        np.testing.assert_allclose(result.attributions[i, 0].numpy(), expected, rtol=1e-10)


def test_chefer_depends_on_the_target_and_rollout_does_not() -> None:
    net, x = tiny_vit(), torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    chefer = [faithmap.explain(net, x, method="attention_gradient", target=t) for t in (0, 1)]
    rollout = [faithmap.explain(net, x, method="attention_rollout", target=t) for t in (0, 1)]
    assert not torch.equal(chefer[0].attributions, chefer[1].attributions)
    torch.testing.assert_close(rollout[0].attributions, rollout[1].attributions, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["attention_rollout", "attention_gradient"])
def test_a_cnn_is_refused_with_alternatives(name: str) -> None:
    with pytest.raises(ModelError, match=r"needs a vision transformer.*grad_cam"):
        faithmap.explain(tiny_model(), torch.rand(2, 3, 16, 16), method=name)


def test_invalid_options_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="'discard_ratio'"):
        faithmap.get_method("attention_rollout", discard_ratio=1.0)
    with pytest.raises(InvalidParameterError, match="'prefix_tokens'"):
        faithmap.get_method("attention_gradient", prefix_tokens=0)


def hugging_face_vit(size: int, patch: int, attention: str) -> HuggingFaceLogits:
    params: dict[str, Any] = {"num_labels": 3, "attn_implementation": attention}
    config = ViTConfig(
        image_size=size,
        patch_size=patch,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **params,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model: nn.Module = ViTForImageClassification(config)
    assert config._attn_implementation == attention
    return HuggingFaceLogits(model.eval())


def test_hugging_face_rollout_equals_the_rollout_of_its_own_attentions() -> None:
    net = hugging_face_vit(32, 8, "eager")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = faithmap.explain(net, x, method="attention_rollout")
    with torch.no_grad():
        attentions = net.model(pixel_values=x, output_attentions=True).attentions
    for i in range(2):
        per_layer = [a[i].double().numpy() for a in attentions]
        grid = torch.from_numpy(numpy_rollout(per_layer, "mean", 0.0)[1:].reshape(1, 1, 4, 4))
        expected = F.interpolate(grid, size=(32, 32), mode="bilinear", align_corners=False)
        torch.testing.assert_close(result.attributions[i : i + 1].double(), expected)


@pytest.mark.parametrize("name", ["attention_rollout", "attention_gradient"])
def test_hugging_face_sdpa_attention_gives_the_eager_maps(name: str) -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    eager = faithmap.explain(hugging_face_vit(32, 8, "eager"), x, method=name)
    sdpa = faithmap.explain(hugging_face_vit(32, 8, "sdpa"), x, method=name)
    torch.testing.assert_close(sdpa.attributions, eager.attributions, rtol=1e-4, atol=1e-6)


def test_hugging_face_vit_at_224_is_explained_by_both() -> None:
    net = Model(hugging_face_vit(224, 16, "sdpa"), batch_size=2)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    for name in ("attention_rollout", "attention_gradient"):
        result = faithmap.explain(net, x, method=name)
        assert result.attributions.shape == (2, 1, 224, 224)
        assert bool(torch.isfinite(result.attributions).all())
        assert result.config["prefix_tokens"] is None


def test_small_vit_at_48x192_puts_its_6x24_grid_on_the_image() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallViT().eval()
    x = torch.rand(1, 3, 48, 192, generator=torch.Generator().manual_seed(3))
    result = faithmap.explain(Model(net, batch_size=1), x, method="attention_rollout")
    with torch.no_grad(), SoftmaxOutputs(net) as captured:
        net(x)
    per_layer = [a[0].double().numpy() for a in captured]
    grid = numpy_rollout(per_layer, "mean", 0.0)[1:].reshape(1, 1, 6, 24)
    expected = F.interpolate(torch.from_numpy(grid), size=(48, 192), mode="bilinear")
    torch.testing.assert_close(result.attributions.double(), expected, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------ guided backprop on GELU
def gelu_derivative(h: torch.Tensor) -> torch.Tensor:
    """d/dh of h * Phi(h): Phi(h) + h * phi(h)."""
    cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2)))
    return cdf + h * torch.exp(-(h**2) / 2) / math.sqrt(2 * math.pi)


def silu_derivative(h: torch.Tensor) -> torch.Tensor:
    """d/dh of h * sigmoid(h): s (1 + h (1 - s))."""
    s = torch.sigmoid(h)
    return s * (1 + h * (1 - s))


@pytest.mark.parametrize(
    ("activation", "derivative"),
    [
        (nn.GELU(), gelu_derivative),
        (nn.SiLU(), silu_derivative),
        (nn.SiLU(inplace=True), silu_derivative),
    ],
    ids=["gelu", "silu", "silu_inplace"],
)
def test_guided_backprop_through_gelu_and_silu_is_relu_of_grad_times_derivative(
    activation: nn.Module, derivative: object
) -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(6, 8).double(), nn.Linear(8, 3).double()
    net = nn.Sequential(first, activation, second)
    x = torch.randn(4, 6, dtype=torch.float64)
    result = faithmap.explain(net, x, method="guided_backprop", target=2, reduce="none")
    assert callable(derivative)
    hidden = first(x).detach()
    upstream = second.weight[2].detach().clamp(min=0)  # the positive part of d logit / d act
    expected = (upstream * derivative(hidden)) @ first.weight.detach()
    torch.testing.assert_close(result.attributions, expected)


def test_guided_backprop_explains_vision_transformers() -> None:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    for net in (tiny_vit(), hugging_face_vit(32, 8, "eager")):
        guided = faithmap.explain(net, x, method="guided_backprop", reduce="sum")
        plain = faithmap.explain(net, x, method="saliency", reduce="sum", absolute=False)
        assert guided.attributions.shape == (2, 1, 32, 32)
        assert bool(torch.isfinite(guided.attributions).all())
        assert not torch.allclose(guided.attributions, plain.attributions)
