"""The default layer of CAM methods: a transformer's second-to-last block, never its patch
embedding (the last convolution of a ViT) and never its last block (zero gradients)."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

import faithmap
from faithmap.errors import InvalidParameterError
from faithmap.methods.layers import find_layer
from faithmap.zoo.libraries import HuggingFaceLogits


def _hf_vit(layers: int) -> nn.Module:
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in ViTConfig's
    )
    torch.manual_seed(0)
    vit: nn.Module = transformers.ViTForImageClassification(config)
    return HuggingFaceLogits(vit.eval())


def _vit_layers(net: nn.Module) -> list[str]:
    """The names of the ``ViTLayer`` blocks (``vit.encoder.layer.i`` or ``vit.layers.i``,
    depending on the transformers version)."""
    return [name for name, sub in net.named_modules() if type(sub).__name__ == "ViTLayer"]


class _SqueezeAttention(nn.Module):
    """A CNN block's channel attention (a module whose class name says attention)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.gate(x.mean((2, 3))))
        gated: torch.Tensor = x * weights[:, :, None, None]
        return gated


class _AttentionCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(
            *(
                nn.Sequential(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1), _SqueezeAttention(4))
                for i in range(3)
            )
        )
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.stages(x).mean((2, 3)))
        return logits


def test_a_hugging_face_vit_gets_its_second_to_last_block() -> None:
    net = _hf_vit(3)
    name, _ = find_layer(faithmap.Model(net), None, "grad_cam")
    assert len(_vit_layers(net)) == 3 and name == _vit_layers(net)[1]


def test_grad_cam_default_on_a_vit_is_the_explicit_block_and_not_zero() -> None:
    net, x = _hf_vit(3), torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    default = faithmap.explain(net, x, method="grad_cam", target=0).attributions
    block = _vit_layers(net)[1]
    named = faithmap.explain(net, x, method="grad_cam", target=0, layer=block).attributions
    assert torch.equal(default, named)
    assert bool((default.flatten(1).abs().amax(1) > 0).all())
    embedding = faithmap.explain(
        net,
        x,
        method="grad_cam",
        target=0,
        layer="model.vit.embeddings.patch_embeddings.projection",
    ).attributions
    assert not torch.equal(default, embedding)


def test_a_one_block_transformer_has_no_default_layer() -> None:
    with pytest.raises(InvalidParameterError, match=r"one block .* layer=.<name>."):
        find_layer(faithmap.Model(_hf_vit(1)), None, "grad_cam")


def test_a_cnn_with_attention_in_its_blocks_keeps_its_last_convolution() -> None:
    name, module = find_layer(faithmap.Model(_AttentionCNN()), None, "grad_cam")
    assert name == "stages.2.0" and isinstance(module, nn.Conv2d)
