"""The contract every registered method keeps (DESIGN.md, Tests)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import faithmap
from conftest import TinyNet, light_params
from faithmap import Model

METHODS = faithmap.METHODS.names()


def explain(
    net: nn.Module | Model, x: torch.Tensor, name: str, **extra: Any
) -> faithmap.Explanation:
    return faithmap.explain(net, x, method=name, **light_params(name), **extra)


def test_registry_has_the_first_methods() -> None:
    assert {"saliency", "integrated_gradients", "occlusion", "rise"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_shape_device_and_record(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    result = explain(tiny_net, images, name)
    assert result.attributions.shape == (5, 1, 16, 16)
    assert result.attributions.device == images.device
    assert result.attributions.dtype == images.dtype
    assert bool(torch.isfinite(result.attributions).all())
    assert result.method == name
    assert result.config == faithmap.get_method(name, **light_params(name)).config()
    assert result.target is not None
    assert torch.equal(result.target, tiny_net(images).argmax(1))
    assert result.cost.forward > 0 and result.cost.seconds > 0


@pytest.mark.parametrize("name", METHODS)
def test_each_sample_explained_alone_gives_the_same(
    name: str, tiny_net: TinyNet, images: torch.Tensor
) -> None:
    batched = explain(tiny_net, images, name).attributions
    for i in range(images.shape[0]):
        alone = explain(tiny_net, images[i : i + 1], name).attributions
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_batch_size_does_not_change_the_result(
    name: str, tiny_net: TinyNet, images: torch.Tensor
) -> None:
    one = explain(Model(tiny_net, batch_size=1), images, name).attributions
    seven = explain(Model(tiny_net, batch_size=7), images, name).attributions
    torch.testing.assert_close(one, seven, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_output(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    first = explain(tiny_net, images, name).attributions
    second = explain(tiny_net, images, name).attributions
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", [n for n in METHODS if "seed" in faithmap.get_method(n).config()])
def test_seed_changes_random_methods(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    first = explain(tiny_net, images, name, seed=1).attributions
    second = explain(tiny_net, images, name, seed=2).attributions
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", METHODS)
def test_inputs_not_mutated(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    copy = images.clone()
    explain(tiny_net, images, name)
    assert torch.equal(images, copy)


State = tuple[list[bool], list[bool], int, dict[str, torch.Tensor]]
"""Training flags, ``requires_grad`` flags, hook count and a copy of the weights."""


def _state(net: nn.Module) -> State:
    hooks = sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in net.modules()
    )
    return (
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        hooks,
        {k: v.clone() for k, v in net.state_dict().items()},
    )


def _assert_same_state(net: nn.Module, before: State) -> None:
    training, grads, hooks, weights = _state(net)
    assert training == before[0]
    assert grads == before[1]
    assert hooks == before[2]
    for key, value in weights.items():
        assert torch.equal(value, before[3][key]), key


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    tiny_net.train()
    tiny_net.head.weight.requires_grad_(False)
    before = _state(tiny_net)
    explain(tiny_net, images, name)
    _assert_same_state(tiny_net, before)


class FailsAfter(nn.Module):
    """Wraps a net and raises on its ``n``-th call."""

    def __init__(self, net: nn.Module, n: int) -> None:
        super().__init__()
        self.net, self.calls, self.n = net, 0, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("simulated failure")
        out: torch.Tensor = self.net(x)
        return out


@pytest.mark.parametrize("name", METHODS)
def test_model_restored_when_it_raises(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    failing = FailsAfter(tiny_net, n=3).train()
    before = _state(failing)
    with pytest.raises(faithmap.ModelError, match="simulated failure"):
        explain(Model(failing, batch_size=2), images, name)
    _assert_same_state(failing, before)
    assert failing.training


def test_batched_run_is_not_slower_than_the_model_itself(tiny_net: TinyNet) -> None:
    """The model is called in batches, not once per perturbation."""
    counting = FailsAfter(tiny_net, n=10**9)
    model = Model(counting, batch_size=32)
    faithmap.explain(model, torch.rand(2, 3, 16, 16), method="rise", n_masks=64)
    # 1 call resolves the target (2 rows), 4 calls score 128 perturbations in batches of 32.
    assert counting.calls == 5
