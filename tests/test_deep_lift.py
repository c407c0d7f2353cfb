"""DeepLIFT (Rescale) and DeepSHAP: Captum's DeepLift/DeepLiftShap, summation-to-delta, refusals."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import DeepLiftShap as CaptumDeepLiftShap
from torch import Tensor, nn

from faithmap import Model
from faithmap.errors import ModelError, TargetError
from faithmap.methods.deep_lift import DeepLift
from faithmap.methods.deep_shap import DeepShap
from faithmap.zoo import load_builtin

ATOL = 1e-5


def _randomise_norms(net: nn.Module) -> nn.Module:
    """Batch norms with running statistics and affine parameters far from the identity."""
    generator = torch.Generator().manual_seed(5)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            with torch.no_grad():
                size = module.num_features
                module.running_mean.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(size, generator=generator) * 0.4 - 0.2)
    return net.eval()


class Residual(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input, then ReLU (a ResNet basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(channels)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.relu2(self.norm2(self.conv2(self.relu1(self.norm1(self.conv1(x))))) + x)
        return out


class Copy(nn.Module):
    """``x.clone()``: a linear step that gives two modules' hooks different tensors."""

    def forward(self, x: Tensor) -> Tensor:
        return x.clone()


class PoolNet(nn.Module):
    """A CNN with max pooling, batch norm, ReLU and a residual block; no two non-linear modules
    follow each other directly (``copy=False``: ReLU, then max pooling, as in most CNNs)."""

    def __init__(self, *, adjacent: bool = False, copy: bool = False) -> None:
        super().__init__()
        stem: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()]
        if adjacent:
            stem += [Copy(), nn.MaxPool2d(2)] if copy else [nn.MaxPool2d(2)]
        else:
            stem += [nn.Conv2d(8, 8, 1), nn.MaxPool2d(2)]
        self.stem = nn.Sequential(*stem)
        self.block = Residual(8)
        self.mix = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.head(self.pool(self.mix(self.block(self.stem(x)))).flatten(1))
        return logits


def _net(*, adjacent: bool = False, copy: bool = False, seed: int = 0) -> PoolNet:
    torch.manual_seed(seed)
    net = _randomise_norms(PoolNet(adjacent=adjacent, copy=copy))
    assert isinstance(net, PoolNet)
    return net


def _images(n: int, seed: int, scale: float = 1.0) -> Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * scale


TARGETS = torch.tensor([0, 1, 2, 3])


def _captum_deep_lift(net: nn.Module, x: Tensor, baselines: Tensor) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum warns that it sets hooks
        attributions: Tensor = CaptumDeepLift(net).attribute(x, baselines, target=TARGETS)
    return attributions.detach()


def _scores(net: nn.Module, x: Tensor, targets: Tensor) -> Tensor:
    with torch.no_grad():
        scores: Tensor = net(x).gather(1, targets[:, None])[:, 0]
    return scores


def test_agrees_with_captum_deep_lift_on_a_cnn_with_pooling_norms_and_a_residual() -> None:
    net, x, baselines = _net(), _images(4, 1), _images(4, 2, scale=0.3)
    ours = DeepLift(baseline_tensor=baselines, reduce="none").explain(
        Model(net, batch_size=3), x, TARGETS
    )
    expected = _captum_deep_lift(net, x, baselines)
    assert expected.abs().max() > 1e-3  # a map worth comparing
    torch.testing.assert_close(ours.attributions, expected, atol=ATOL, rtol=0)


def test_agrees_with_captum_for_the_zero_baseline_and_sums_to_delta() -> None:
    net, x = _net(seed=1), _images(4, 3)
    ours = DeepLift(reduce="none").explain(Model(net, batch_size=4), x, TARGETS).attributions
    torch.testing.assert_close(
        ours, _captum_deep_lift(net, x, torch.zeros_like(x)), atol=ATOL, rtol=0
    )
    delta = _scores(net, x, TARGETS) - _scores(net, torch.zeros_like(x), TARGETS)
    torch.testing.assert_close(ours.flatten(1).sum(1), delta, atol=ATOL, rtol=0)


def test_relu_then_max_pool_agrees_with_captum_where_captum_hooks_see_separate_tensors() -> None:
    """Captum 0.9 reads a stale gradient when two hooked modules share a tensor (ReLU feeding
    max pooling; captum#1104, fixed by captum#1843): its own summation-to-delta fails there.
    With a copy between them Captum computes the same function's DeepLIFT correctly."""
    net, separated = _net(adjacent=True), _net(adjacent=True, copy=True)
    x, baselines = _images(4, 4), _images(4, 5, scale=0.3)
    ours = DeepLift(baseline_tensor=baselines, reduce="none").explain(net, x, TARGETS)
    torch.testing.assert_close(
        ours.attributions, _captum_deep_lift(separated, x, baselines), atol=ATOL, rtol=0
    )
    delta = _scores(net, x, TARGETS) - _scores(net, baselines, TARGETS)
    torch.testing.assert_close(ours.attributions.flatten(1).sum(1), delta, atol=ATOL, rtol=0)
    captum_total = _captum_deep_lift(net, x, baselines).flatten(1).sum(1)
    assert (captum_total - delta).abs().max() > 1e-3  # the upstream bug this test works around


def test_deep_shap_agrees_with_captum_deep_lift_shap_and_sums_to_mean_delta() -> None:
    net, x, background = _net(seed=2), _images(4, 6), _images(5, 7, scale=0.5)
    ours = DeepShap(background=background, reduce="none").explain(
        Model(net, batch_size=7), x, TARGETS
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CaptumDeepLiftShap(net).attribute(x, background, target=TARGETS).detach()
    torch.testing.assert_close(ours.attributions, expected, atol=ATOL, rtol=0)
    reference = torch.stack([_scores(net, background, torch.full((5,), int(t))) for t in TARGETS])
    delta = _scores(net, x, TARGETS) - reference.mean(1)
    torch.testing.assert_close(ours.attributions.flatten(1).sum(1), delta, atol=ATOL, rtol=0)
    assert ours.config["background"].startswith("Tensor(shape=(5, 3, 16, 16)")


def test_sums_to_delta_with_overlapping_pools_inplace_and_reused_relus() -> None:
    relu = nn.ReLU(inplace=True)  # one module, called twice
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), relu, nn.MaxPool2d(3, 2, padding=1),
        nn.Conv2d(6, 6, 3, padding=1), relu, nn.AdaptiveMaxPool2d(2), nn.Flatten(),
        nn.Linear(24, 4), nn.Tanh(), nn.Linear(4, 4),
    )  # fmt: skip
    torch.manual_seed(3)
    _randomise_norms(net)
    x, baselines = _images(4, 8), _images(4, 9, scale=0.5)
    for baseline in (baselines, baselines[:1]):  # one baseline each, one for all
        ours = DeepLift(baseline_tensor=baseline, reduce="none").explain(net, x, TARGETS)
        delta = _scores(net, x, TARGETS) - _scores(net, baseline.expand_as(x), TARGETS)
        torch.testing.assert_close(ours.attributions.flatten(1).sum(1), delta, atol=ATOL, rtol=0)
    assert relu.inplace and not relu._forward_hooks and not relu._forward_pre_hooks


def test_the_built_in_cnn_sums_to_delta_in_pixel_space() -> None:
    net = load_builtin("cnn")  # normalises inside forward; ReLU then max pooling
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(10))
    targets = torch.tensor([0, 2, 5])
    result = DeepLift(baseline=0.5, reduce="sum").explain(net, x, targets)
    delta = _scores(net, x, targets) - _scores(net, torch.full_like(x, 0.5), targets)
    torch.testing.assert_close(result.attributions.flatten(1).sum(1), delta, atol=1e-4, rtol=0)
    assert result.cost.forward == 1 + 3 and result.cost.backward == 3  # one reference, 3 rows


def test_declared_preprocessing_keeps_summation_in_the_users_pixels() -> None:
    net, x = _net(seed=4), _images(4, 11)
    model = Model(net, preprocessing={"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.3, 0.25)})
    result = DeepLift(baseline=0.0, reduce="none").explain(model, x, TARGETS)
    outputs = model.outputs(torch.cat([x, torch.zeros_like(x)]))
    delta = outputs[:4].gather(1, TARGETS[:, None])[:, 0] - outputs[4:, TARGETS].diagonal()
    torch.testing.assert_close(result.attributions.flatten(1).sum(1), delta, atol=ATOL, rtol=0)


def test_a_linear_model_gets_input_minus_baseline_times_weight() -> None:
    net = nn.Linear(6, 3)
    x, baseline = torch.rand(2, 6), torch.rand(1, 6)
    result = DeepLift(baseline_tensor=baseline).explain(net, x, 1).attributions
    torch.testing.assert_close(result, (x - baseline) * net.weight[1].detach())
    gradients = DeepLift(baseline_tensor=baseline, multiply_by_inputs=False).explain(net, x, 1)
    torch.testing.assert_close(gradients.attributions, net.weight[1].detach().expand(2, 6))


class FunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(F.relu(self.conv(x)).mean((2, 3)))
        return out


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 4), nn.Linear(6, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.a(x) * self.b(x))
        return out


@pytest.mark.parametrize(
    ("net", "inputs", "operation"),
    [
        (FunctionalRelu(), torch.rand(2, 3, 8, 8), "'Relu'"),
        (Gated(), torch.rand(2, 6), "'Mul'"),
        (
            nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
            torch.rand(2, 6),
            "'NativeLayerNorm'",
        ),
        (nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=1)), torch.rand(2, 6), "'Softmax'"),
    ],
    ids=["functional_relu", "product_of_activations", "layer_norm", "softmax_module"],
)
@pytest.mark.parametrize("method", [DeepLift(), DeepShap(background=torch.zeros(2, 1))])
def test_non_linearities_without_a_rule_are_refused(
    net: nn.Module, inputs: Tensor, operation: str, method: DeepLift | DeepShap
) -> None:
    if isinstance(method, DeepShap):
        method = DeepShap(background=torch.zeros(2, *inputs.shape[1:]))
    with pytest.raises(ModelError, match=f"no rule for the non-linear operation {operation}"):
        method.explain(net, inputs, 0)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_training_mode_norms_and_callable_targets_are_refused() -> None:
    net = _net().train()
    with pytest.raises(ModelError, match=r"'stem\.1' \(BatchNorm2d\) in eval mode"):
        DeepLift().explain(Model(net, eval_mode=False), _images(2, 12), 0)
    assert net.training
    with pytest.raises(TargetError, match="callable target"):
        DeepLift().explain(net, _images(2, 12), lambda out: out[:, 0])
