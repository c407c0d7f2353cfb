"""LRP: agreement with Captum, conservation and closed-form oracles, folding, state, errors."""

from __future__ import annotations

import warnings
from typing import Any, TypeVar, cast

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import faithmap
import faithmap.data
from faithmap import Model
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.methods.lrp import Lrp
from faithmap.methods.lrp_rules import fold_batch_norm
from faithmap.zoo import load_builtin


def lrp(net: nn.Module | Model, x: torch.Tensor, target: TargetLike, **params: Any) -> torch.Tensor:
    params.setdefault("reduce", "none")
    model = net if isinstance(net, Model) else Model(net, batch_size=8)
    return faithmap.explain(model, x, method="lrp", target=target, **params).attributions


def logit(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        scores: torch.Tensor = net(x)
        return scores.gather(1, target[:, None]).squeeze(1)


class SmallNet(nn.Module):
    """Conv, optional batch norm, ReLU, a pool, conv, ReLU, global pool, flatten, linear."""

    def __init__(self, *, norm: bool = False, max_pool: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = [nn.Conv2d(3, 6, 3, padding=1)]
        if norm:
            layers.append(nn.BatchNorm2d(6))
        layers += [
            nn.ReLU(),
            nn.MaxPool2d(2) if max_pool else nn.AvgPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(8, 4)
        with torch.no_grad():
            for parameter in self.parameters():  # logits of order 1, so epsilon matters
                parameter.normal_(0.0, 0.6)
            if norm:
                batch_norm = cast(nn.BatchNorm2d, self.features[1])
                assert batch_norm.running_mean is not None and batch_norm.running_var is not None
                batch_norm.running_mean.uniform_(-0.2, 0.2)
                batch_norm.running_var.uniform_(0.5, 1.5)
                batch_norm.weight.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).flatten(1))
        return logits


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))


TARGET = torch.tensor([0, 1, 2])


def captum_epsilon(net: nn.Module, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    layers = (
        nn.Conv2d,
        nn.Linear,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.MaxPool2d,
        nn.BatchNorm2d,
    )
    for module in net.modules():
        if isinstance(module, layers):
            module.rule = EpsilonRule(epsilon=epsilon)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Input Tensor 0 did not require grad"
            result: torch.Tensor = LRP(net).attribute(x.clone(), target=TARGET)
    finally:
        for module in net.modules():
            if hasattr(module, "rule"):
                del module.rule
    return result.detach()


@pytest.mark.parametrize("epsilon", [0.1, 1.0])
def test_epsilon_agrees_with_captum(x: torch.Tensor, epsilon: float) -> None:
    net = SmallNet()
    expected = captum_epsilon(net, x, epsilon)
    assert expected.abs().max() > 1e-2
    ours = lrp(net, x, TARGET, composite="epsilon", epsilon=epsilon)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


def test_epsilon_agrees_with_captum_with_batch_norm_and_max_pool(x: torch.Tensor) -> None:
    # Captum stabilises max pooling and an unfolded batch norm with epsilon as well, so the
    # two agree at its default epsilon, where that makes no difference.
    net = SmallNet(norm=True, max_pool=True)
    expected = captum_epsilon(net, x, 1e-9)
    ours = lrp(net, x, TARGET, composite="epsilon", epsilon=1e-9)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


class ResidualNet(nn.Module):
    """Bias-free: conv, ReLU, a residual block with a functional sum, max pool, mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(6, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.stem(x))
        h = self.relu3(self.conv2(self.relu2(self.conv1(h))) + h)
        logits: torch.Tensor = self.head(self.pool(h).mean(dim=(2, 3)))
        return logits


@pytest.mark.parametrize("composite", ["epsilon", "z_plus"])
def test_relevance_is_conserved_without_biases(x: torch.Tensor, composite: str) -> None:
    net = ResidualNet().eval()
    target = torch.tensor([1, 1, 1])
    relevance = lrp(net, 2 * x - 1, target, composite=composite, epsilon=1e-9)
    scores = logit(net, 2 * x - 1, target)
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), scores, atol=1e-5, rtol=1e-5)


def test_epsilon_absorption_is_the_closed_form() -> None:
    """Two dense layers with biases: relevance kept at each layer is R_k (z_k - b_k) / stab(z_k)."""
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).eval()
    x = torch.randn(4, 6)
    epsilon, target = 0.5, torch.tensor([0, 1, 2, 0])
    first, second = cast(nn.Linear, net[0]), cast(nn.Linear, net[2])
    w1, b1, w2, b2 = first.weight, first.bias, second.weight, second.bias

    def stab(z: torch.Tensor) -> torch.Tensor:
        return z + epsilon * torch.where(z >= 0, 1.0, -1.0)

    with torch.no_grad():
        hidden = x @ w1.T + b1
        active = hidden.clamp(min=0)
        out = (active @ w2.T + b2).gather(1, target[:, None])
        top = active * w2[target] * out / stab(out)  # R_k of the hidden units
        expected = x * ((top / stab(hidden)) @ w1)  # R_j = sum_k x_j w_kj R_k / stab(z_k)
    relevance = lrp(net, x, target, composite="epsilon", epsilon=epsilon)
    torch.testing.assert_close(relevance, expected, atol=1e-6, rtol=1e-5)
    kept = (top * (hidden - b1) / stab(hidden)).sum(1)
    torch.testing.assert_close(relevance.sum(1), kept, atol=1e-6, rtol=1e-5)


def test_z_plus_is_non_negative_on_non_negative_inputs(x: torch.Tensor) -> None:
    net = SmallNet(max_pool=True)
    target = net(x).argmax(1)
    scores = logit(net, x, target)
    assert bool((scores > 0).all())
    relevance = lrp(net, x, target, composite="z_plus")
    assert bool((relevance >= 0).all())
    assert bool((relevance > 0).any())
    # z+ hands down the whole score, bias included.
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), scores, atol=1e-4, rtol=1e-4)


def test_gamma_is_the_closed_form() -> None:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(5, 3)).eval()
    x, gamma, target = torch.rand(4, 5), 0.7, torch.tensor([2, 0, 1, 1])
    layer = cast(nn.Linear, net[0])
    w, b = layer.weight[target], layer.bias[target]
    with torch.no_grad():
        modified = w + gamma * w.clamp(min=0)
        contributions = x * modified
        z = (x * w).sum(1) + b
        denominator = contributions.sum(1) + b + gamma * b.clamp(min=0)
        expected = contributions / denominator[:, None] * z[:, None]
    relevance = lrp(net, x, target, composite="gamma", gamma=gamma, epsilon=1e-9)
    torch.testing.assert_close(relevance, expected, atol=1e-6, rtol=1e-5)


def test_alpha2beta1_is_the_closed_form_for_inputs_of_both_signs() -> None:
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(12, 3)).eval()
    x, target = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        contributions = x * cast(nn.Linear, net[0]).weight[target]
        z = net(x).gather(1, target[:, None])
        positive, negative = contributions.clamp(min=0), contributions.clamp(max=0)
        expected = z * (
            2 * positive / positive.sum(1, keepdim=True) - negative / negative.sum(1, keepdim=True)
        )
    assert bool(torch.isfinite(expected).all())  # both signs occur in every sample
    relevance = lrp(net, x, target, composite="alpha2beta1", epsilon=1e-9)
    torch.testing.assert_close(relevance, expected, atol=1e-5, rtol=1e-5)


_Norm = TypeVar("_Norm", nn.BatchNorm1d, nn.BatchNorm2d)


def _randomised(norm: _Norm) -> _Norm:
    assert norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.2, 2)
        if norm.affine:
            norm.weight.uniform_(-2, 2)
            norm.bias.uniform_(-1, 1)
    return norm.eval()


@pytest.mark.parametrize("affine", [True, False])
def test_folded_layers_give_the_same_outputs(affine: bool) -> None:
    torch.manual_seed(7)
    conv, norm2d = nn.Conv2d(3, 4, 3, stride=2), _randomised(nn.BatchNorm2d(4, affine=affine))
    images = torch.rand(2, 3, 9, 9)
    weight, bias = fold_batch_norm(conv.weight, conv.bias, norm2d)
    torch.testing.assert_close(F.conv2d(images, weight, bias, stride=2), norm2d(conv(images)))
    linear, norm1d = nn.Linear(5, 4, bias=False), _randomised(nn.BatchNorm1d(4, affine=affine))
    rows = torch.rand(2, 5)
    weight, bias = fold_batch_norm(linear.weight, linear.bias, norm1d)
    torch.testing.assert_close(F.linear(rows, weight, bias), norm1d(linear(rows)))


@pytest.mark.parametrize("composite", ["z_plus", "gamma", "epsilon"])
def test_batch_norm_is_folded_into_the_convolution(x: torch.Tensor, composite: str) -> None:
    """LRP of conv + batch norm equals LRP of one convolution with the parameters folded by hand."""
    net = SmallNet(norm=True)
    conv, norm = cast(nn.Conv2d, net.features[0]), cast(nn.BatchNorm2d, net.features[1])
    assert norm.running_mean is not None and norm.running_var is not None
    assert conv.bias is not None
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = SmallNet()
    with torch.no_grad():
        folded_conv = cast(nn.Conv2d, folded.features[0])
        assert folded_conv.bias is not None
        folded_conv.weight.copy_(conv.weight * scale[:, None, None, None])
        folded_conv.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)
    folded.features[3].load_state_dict(net.features[4].state_dict())
    folded.head.load_state_dict(net.head.state_dict())
    torch.testing.assert_close(folded(x), net(x))
    expected = lrp(folded, x, TARGET, composite=composite)
    torch.testing.assert_close(lrp(net, x, TARGET, composite=composite), expected)


def test_basic_rule_everywhere_is_gradient_times_input(x: torch.Tensor) -> None:
    """LRP-0 on a ReLU network is input x gradient (Ancona et al. 2018)."""
    net = SmallNet(norm=True, max_pool=True)
    rows = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(net(rows).gather(1, TARGET[:, None]).sum(), rows)
    composite = dict.fromkeys(("Conv2d", "Linear", "AvgPool2d", "AdaptiveAvgPool2d"), "basic")
    torch.testing.assert_close(lrp(net, x, TARGET, composite=composite), x * gradient)


def test_a_mapping_is_the_named_composite_it_spells(x: torch.Tensor) -> None:
    net = SmallNet(norm=True)
    mapping = {"Conv2d": "z_plus", "Linear": "epsilon", "AdaptiveAvgPool2d": "basic"}
    mapping |= {"AvgPool2d": "basic"}
    expected = lrp(net, x, TARGET, composite="epsilon_plus", epsilon=0.01)
    assert torch.equal(lrp(net, x, TARGET, composite=mapping, epsilon=0.01), expected)
    assert not torch.equal(lrp(net, x, TARGET, composite="epsilon", epsilon=0.01), expected)


def _state(net: nn.Module) -> tuple[list[bool], list[bool], list[int], dict[str, torch.Tensor]]:
    hooks = [
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in net.modules()
    ]
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    return (
        [m.training for m in net.modules()],
        [p.requires_grad for p in net.parameters()],
        hooks,
        weights,
    )


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_built_in_models(name: str) -> None:
    net = load_builtin(name)
    images = faithmap.data.make_shapes(2, size=32, seed=3).images
    target = net(images).argmax(1)
    rows = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(net(rows).gather(1, target[:, None]).sum(), rows)
    calls: list[int] = []
    handle = cast(nn.Module, net.features).register_forward_hook(lambda *_: calls.append(1))
    net.train()
    cast(nn.Linear, net.head).weight.requires_grad_(False)
    before = _state(net)
    # Epsilon -> 0 with batch norm folded is LRP-0 on the built-in models too: the normalised
    # input (x - 0.5) / 0.25 times the gradient with respect to it, 0.25 * the input gradient.
    tiny = lrp(net, images, target, composite="epsilon", epsilon=1e-9)
    torch.testing.assert_close(
        tiny, (images - 0.5) / 0.25 * (0.25 * gradient), atol=1e-5, rtol=1e-4
    )
    plus = lrp(net, images, target, composite="epsilon_plus")
    assert plus.shape == images.shape and bool(torch.isfinite(plus).all())
    assert not torch.allclose(plus, tiny, atol=1e-3)
    after = _state(net)
    assert after[:3] == before[:3]
    assert all(torch.equal(after[3][k], v) for k, v in before[3].items())
    count = len(calls)
    net(images)
    assert len(calls) == count + 1  # the user's hook still works
    handle.remove()


class Normalised(nn.Module):
    """A network that normalises its input in ``forward`` before its first layer."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body((x - 0.5) / 0.25)
        return out


def test_an_input_normalisation_in_forward_keeps_the_relevance_of_the_normalised_input() -> None:
    torch.manual_seed(0)
    body = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2, bias=False)
    )
    images = torch.rand(3, 3, 8, 8)
    for composite in ("epsilon", "epsilon_plus", "z_plus"):
        wrapped = lrp(Normalised(body), images, 0, composite=composite, epsilon=1e-9)
        direct = lrp(body, (images - 0.5) / 0.25, 0, composite=composite, epsilon=1e-9)
        torch.testing.assert_close(wrapped, direct)
    # bias-free: the relevance total is the score, through the normalisation too
    relevance = lrp(Normalised(body), images, 0, composite="epsilon", epsilon=1e-9)
    score = Normalised(body)(images)[:, 0]
    torch.testing.assert_close(relevance.flatten(1).sum(1), score, atol=1e-5, rtol=1e-5)


class BadNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(self.norm(x))
        return out.mean(dim=(2, 3))


class OwnParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.head = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(x.flatten(1) * self.scale)
        return logits


def _flat(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), *layers, nn.Linear(8, 2))


@pytest.mark.parametrize(
    ("net", "match"),
    [
        (_flat(nn.LayerNorm(8)), "'2' of type LayerNorm"),
        (_flat(nn.GELU()), "'2' of type GELU"),
        (_flat(nn.Tanh()), "'2' of type Tanh"),
        (OwnParameter(), "'\\(the model itself\\)' of type OwnParameter"),
        (BadNorm(), "'norm' \\(BatchNorm2d\\) receives something else"),
    ],
)
def test_unsupported_layers_are_named(net: nn.Module, match: str, x: torch.Tensor) -> None:
    before = _state(net)
    with pytest.raises(ModelError, match=match):
        lrp(net, x, 0)
    after = _state(net)
    assert after[:3] == before[:3]


def test_attention_is_unsupported(x: torch.Tensor) -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = x.flatten(1, 2)
            logits: torch.Tensor = self.head(self.attention(tokens, tokens, tokens)[0].mean(1))
            return logits

    with pytest.raises(ModelError, match="'attention' of type MultiheadAttention"):
        lrp(Attention(), x, 0)


def test_training_mode_layers_are_refused(x: torch.Tensor) -> None:
    net = SmallNet(norm=True).train()
    with pytest.raises(ModelError, match=r"'features\.1' with its running statistics"):
        lrp(Model(net, eval_mode=False, batch_size=4), x, 0)
    dropout = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 16 * 16, 2)).train()
    with pytest.raises(ModelError, match="dropout '1' in eval mode"):
        lrp(Model(dropout, eval_mode=False, batch_size=4), x, 0)
    assert net.training and dropout.training


def test_a_callable_is_refused(x: torch.Tensor) -> None:
    with pytest.raises(ModelError, match=r"layers of an nn\.Module"):
        lrp(Model(lambda rows: rows.mean(dim=(2, 3)), batch_size=4), x, 0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"composite": "plus"}, "'composite' parameter of Lrp must be one of 'epsilon'"),
        ({"composite": 3}, "'composite' parameter of Lrp"),
        ({"composite": {"Conv1d": "epsilon"}}, "Got 'Conv1d' instead"),
        ({"composite": {"Conv2d": "flat"}}, "rule for Conv2d .* Got 'flat' instead"),
        ({"composite": {"AvgPool2d": "gamma"}}, "rule for AvgPool2d .* 'epsilon', 'basic'"),
        ({"epsilon": 0.0}, "'epsilon' parameter of Lrp must be a finite number > 0"),
        ({"gamma": -1.0}, "'gamma' parameter of Lrp must be a finite number >= 0"),
        ({"reduce": "median"}, "'reduce' parameter of Lrp"),
    ],
)
def test_bad_parameters(params: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        Lrp(**params)  # type: ignore[arg-type]


def test_config_is_a_plain_record() -> None:
    method = faithmap.get_method("lrp", composite={"Conv2d": "gamma"}, gamma=0.5)
    assert method.config() == {
        "composite": {"Conv2d": "gamma"},
        "epsilon": 1e-6,
        "gamma": 0.5,
        "reduce": "sum",
    }


def test_smoothgrad_over_lrp_without_noise_is_lrp(x: torch.Tensor) -> None:
    net = SmallNet(norm=True)
    expected = lrp(net, x, TARGET, composite="epsilon_plus", reduce="sum")
    smoothed = faithmap.explain(
        Model(net, batch_size=8),
        x,
        method="smoothgrad",
        target=TARGET,
        base="lrp",
        base_params={"composite": "epsilon_plus"},
        n_samples=2,
        stdev=0.0,
        reduce="sum",
    ).attributions
    torch.testing.assert_close(smoothed, expected)
