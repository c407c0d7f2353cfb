"""AttnLRP: conservation on bias-free transformers, agreement with lxt, Hugging Face, refusals."""

from __future__ import annotations

import importlib
from typing import Any, cast

import lxt.explicit.functional as lxt_functional
import lxt.explicit.rules as lxt_rules
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import faithmap
from faithmap import Model
from faithmap.errors import ModelError
from faithmap.methods.lrp_transformer import AttnLrp
from faithmap.zoo import load_builtin
from faithmap.zoo.architectures import normalise
from faithmap.zoo.libraries import HuggingFaceLogits
from faithmap.zoo.vit import SmallViT, TransformerBlock

transformers: Any = importlib.import_module("transformers")  # its configs take **kwargs


def attn_lrp(net: nn.Module, x: torch.Tensor, target: int, **params: Any) -> torch.Tensor:
    params.setdefault("reduce", "none")
    model = Model(net, batch_size=4)
    return faithmap.explain(model, x, method="attn_lrp", target=target, **params).attributions


def logit(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    with torch.no_grad():
        scores: torch.Tensor = net(x)
    return scores[:, target]


def without_biases(net: nn.Module) -> nn.Module:
    """Every bias, class token and position embedding set to zero: nothing absorbs relevance."""
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.endswith(("bias", "cls_token", "pos_embed", "position_embeddings")):
                parameter.zero_()
    return net


def small_vit() -> SmallViT:
    torch.manual_seed(0)
    return SmallViT().eval()


def hf_vit(size: int, patch: int, hidden: int, layers: int, attention: str) -> nn.Module:
    config = transformers.ViTConfig(
        image_size=size,
        patch_size=patch,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        num_labels=3,
        attn_implementation=attention,
    )
    torch.manual_seed(0)
    return HuggingFaceLogits(transformers.ViTForImageClassification(config)).eval()


class BertEncoder(nn.Module):
    """BERT layers (post-norm, GELU) over ``(N, T, D)`` embeddings; logits of the first token."""

    def __init__(self, attention: str, bias: bool = True) -> None:
        super().__init__()
        config = transformers.BertConfig(
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            attn_implementation=attention,
        )
        torch.manual_seed(0)
        self.layers = nn.ModuleList(
            transformers.models.bert.modeling_bert.BertLayer(config) for _ in range(2)
        )
        self.head = nn.Linear(16, 3, bias=bias)
        self.eval()

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = embeddings
        for layer in self.layers:
            hidden = layer(hidden)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        logits: torch.Tensor = self.head(hidden[:, 0])
        return logits


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_constant_attention_conserves_relevance_on_a_bias_free_small_vit() -> None:
    net = without_biases(small_vit()).double()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    relevance = attn_lrp(net, x, 2, attention="constant", epsilon=1e-12)
    torch.testing.assert_close(relevance.flatten(1).sum(1), logit(net, x, 2), rtol=1e-9, atol=1e-9)


def test_constant_attention_conserves_relevance_on_bias_free_hugging_face_models() -> None:
    for attention in ("eager", "sdpa"):
        vit = without_biases(hf_vit(16, 8, 16, 2, attention)).double()
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)).double()
        relevance = attn_lrp(vit, x, 1, attention="constant", epsilon=1e-12)
        torch.testing.assert_close(
            relevance.flatten(1).sum(1), logit(vit, x, 1), rtol=1e-9, atol=1e-9
        )
        bert = without_biases(BertEncoder(attention, bias=False)).double()
        tokens = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(3)).double()
        relevance = attn_lrp(bert, tokens, 0, attention="constant", epsilon=1e-12)
        torch.testing.assert_close(
            relevance.flatten(1).sum(1), logit(bert, tokens, 0), rtol=1e-9, atol=1e-9
        )


def test_eager_and_sdpa_attention_give_the_same_map() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    tokens = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(5))
    for attention in ("attn_lrp", "constant"):
        eager = attn_lrp(hf_vit(16, 8, 16, 2, "eager"), x, 0, attention=attention)
        sdpa = attn_lrp(hf_vit(16, 8, 16, 2, "sdpa"), x, 0, attention=attention)
        torch.testing.assert_close(eager, sdpa, rtol=1e-4, atol=1e-6)
        eager = attn_lrp(BertEncoder("eager"), tokens, 0, attention=attention)
        sdpa = attn_lrp(BertEncoder("sdpa"), tokens, 0, attention=attention)
        torch.testing.assert_close(eager, sdpa, rtol=1e-4, atol=1e-6)


def lxt_small_vit(net: SmallViT, x: torch.Tensor, target: int, epsilon: float) -> torch.Tensor:
    """SmallViT's forward written with lxt's explicit rules: relevance of the normalised input.

    The patch embedding (stride = kernel) is an unfold and a ``linear_epsilon``; constant
    additions (position embedding) go through ``add2``, scalings through ``mul2``; every
    stabiliser, layer norm's included, is ``epsilon``.
    """
    lf = lxt_functional
    identity = lxt_rules.identity
    pixels = normalise(x).detach().requires_grad_(True)

    def norm(tokens: torch.Tensor, layer: nn.LayerNorm) -> torch.Tensor:
        normed: torch.Tensor = lf.layer_norm_grad_fn.apply(
            tokens, layer.weight, layer.bias, layer.eps, epsilon
        )
        return normed

    patch = net.patch_size
    columns = F.unfold(pixels, patch, stride=patch).transpose(1, 2)
    weight = net.patch_embed.weight.flatten(1)
    tokens = lf.linear_epsilon(columns, weight, net.patch_embed.bias, epsilon)
    cls = net.cls_token.expand(tokens.shape[0], -1, -1)
    position = net.pos_embed.expand(tokens.shape[0], -1, -1)
    tokens = lf.add2(torch.cat([cls, tokens], 1), position, epsilon=epsilon)
    for block in cast(list[TransformerBlock], list(net.blocks)):
        n, t, d = tokens.shape
        heads = block.attention.heads
        hidden = norm(tokens, block.norm1)
        qkv = lf.linear_epsilon(
            hidden, block.attention.qkv.weight, block.attention.qkv.bias, epsilon
        )
        q, k, v = qkv.reshape(n, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
        scores = lf.matmul(lf.mul2(q, block.attention.scale), k.transpose(-2, -1), epsilon=epsilon)
        weights = lf.softmax(scores, -1)
        mixed = lf.matmul(weights, v, epsilon=epsilon).transpose(1, 2).reshape(n, t, d)
        attended = lf.linear_epsilon(
            mixed, block.attention.proj.weight, block.attention.proj.bias, epsilon
        )
        tokens = lf.add2(tokens, attended, epsilon=epsilon)
        hidden = norm(tokens, block.norm2)
        first, second = cast(nn.Linear, block.mlp[0]), cast(nn.Linear, block.mlp[2])
        hidden = lf.linear_epsilon(hidden, first.weight, first.bias, epsilon)
        hidden = identity(F.gelu, hidden)
        hidden = lf.linear_epsilon(hidden, second.weight, second.bias, epsilon)
        tokens = lf.add2(tokens, hidden, epsilon=epsilon)
    tokens = norm(tokens, net.norm)
    logits = lf.linear_epsilon(tokens[:, 0], net.head.weight, net.head.bias, epsilon)
    relevance = torch.zeros_like(logits)
    relevance[:, target] = logits[:, target].detach()
    logits.backward(relevance)
    assert pixels.grad is not None
    return pixels.grad


@pytest.mark.parametrize("biases", [True, False], ids=["biases", "bias-free"])
def test_agrees_with_lxt_explicit_rules_on_the_small_vit(biases: bool) -> None:
    net = small_vit().double().requires_grad_(False)
    if not biases:
        without_biases(net)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    target = 3
    expected = lxt_small_vit(net, x, target, epsilon=1e-12)
    relevance = attn_lrp(net, x, target, epsilon=1e-12)
    scale = float(expected.abs().max())
    torch.testing.assert_close(relevance, expected, rtol=0, atol=1e-6 * scale)
    # AttnLRP's softmax rule is not conservative: the total differs from the logit
    assert not torch.allclose(relevance.flatten(1).sum(1), logit(net, x, target), rtol=1e-3)


def test_the_built_in_vit_and_its_state() -> None:
    net = load_builtin("vit")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    maps = faithmap.explain(Model(net, batch_size=2), x, method="attn_lrp", target=None)
    assert maps.attributions.shape == (2, 1, 64, 64)
    assert bool(torch.isfinite(maps.attributions).all())
    assert all(float(m.max() - m.min()) > 0 for m in maps.attributions)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert not net._forward_hooks and not net._forward_pre_hooks
    assert torch._C._len_torch_function_stack() == 0


def test_a_hugging_face_vit_at_224() -> None:
    vit = hf_vit(224, 16, 32, 2, "sdpa")
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(8))
    for attention in ("attn_lrp", "constant"):
        relevance = attn_lrp(vit, x, 0, attention=attention, reduce="sum")
        assert relevance.shape == (1, 1, 224, 224)
        assert bool(torch.isfinite(relevance).all()) and float(relevance.abs().max()) > 0


def test_a_cnn_gets_the_map_of_lrp() -> None:
    net = load_builtin("cnn")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    for composite in ("epsilon", "epsilon_plus"):
        expected = faithmap.explain(Model(net), x, method="lrp", composite=composite)
        relevance = faithmap.explain(Model(net), x, method="attn_lrp", composite=composite)
        torch.testing.assert_close(relevance.attributions, expected.attributions, rtol=0, atol=0)


class Gated(nn.Module):
    """A bias-free gated MLP (SwiGLU) and a causal attention over tokens: products of two
    activations, SiLU and F.scaled_dot_product_attention with is_causal."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gate, self.up = nn.Linear(8, 16, bias=False), nn.Linear(8, 16, bias=False)
        self.down = nn.Linear(16, 8, bias=False)
        self.qkv = nn.Linear(8, 24, bias=False)
        self.head = nn.Linear(8, 2, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = tokens + self.down(F.silu(self.gate(tokens)) * self.up(tokens))
        q, k, v = self.qkv(hidden)[:, None].chunk(3, dim=-1)
        hidden = hidden + F.scaled_dot_product_attention(q, k, v, is_causal=True)[:, 0]
        logits: torch.Tensor = self.head(hidden[:, 0])
        return logits


def test_gates_and_causal_attention_conserve_relevance() -> None:
    net = Gated().double()
    tokens = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(10)).double()
    relevance = attn_lrp(net, tokens, 1, attention="constant", epsilon=1e-12)
    torch.testing.assert_close(
        relevance.flatten(1).sum(1), logit(net, tokens, 1), rtol=1e-9, atol=1e-9
    )
    # causal attention: the first token, whose logit is explained, sees only itself
    assert bool((relevance[:, 1:] == 0).all()) and bool((relevance[:, 0] != 0).any())


def test_the_uniform_rule_halves_a_product() -> None:
    class Product(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x[:, :1] * x[:, 1:2] + x[:, 2:]).flatten(1)

    x = torch.tensor([[[2.0], [3.0], [5.0]], [[-1.0], [4.0], [1.0]]])
    relevance = attn_lrp(Product(), x, 0)
    expected = torch.tensor([[3.0, 3.0, 5.0], [-2.0, -2.0, 1.0]])
    torch.testing.assert_close(relevance[:, :, 0], expected)


class Exponential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(torch.exp(x).flatten(1))
        return logits


class HandRmsNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        logits: torch.Tensor = self.head(normed.flatten(1))
        return logits


class FusedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(1, 2)
        logits: torch.Tensor = self.head(self.attention(tokens, tokens, tokens)[0].mean(1))
        return logits


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (Exponential(), "operation 'Exp'"),
        (HandRmsNorm(), "operation '(Rsqrt|Pow|Mul)'"),
        (FusedAttention(), "'attention' of type MultiheadAttention"),
        (nn.Sequential(nn.Conv1d(3, 2, 3), nn.Flatten(1)), "'0' of type Conv1d"),
    ],
)
def test_operations_without_a_rule_are_refused(
    net: nn.Module, match: str, images: torch.Tensor
) -> None:
    x = images if not isinstance(net, nn.Sequential) else images[:, :, 0]
    with pytest.raises(ModelError, match=match):
        attn_lrp(net, x, 0)
    assert not net._forward_hooks and not net._forward_pre_hooks
    assert torch._C._len_torch_function_stack() == 0
    assert all(p.requires_grad for p in net.parameters())


def test_a_bad_attention_rule_is_refused() -> None:
    with pytest.raises(faithmap.errors.InvalidParameterError, match="'attention' parameter"):
        AttnLrp(attention="rollout")  # type: ignore[arg-type]
