"""HiRes-CAM, XGrad-CAM, Ablation-CAM and FullGrad: hand-written computations, closed forms on a
global-average-pooling network, agreement with pytorch-grad-cam, batching and refusals.

pytorch-grad-cam (``pip install --no-deps grad-cam ttach``: its own requirements would replace
torch by a CUDA build and add torchvision) imports torchvision's transforms and ops at import
time, which cannot be imported here; the tests stub only those imports (``sys.modules``) and
compare values with the package's own classes. Where its definition differs from the paper,
the test says so and compares where they coincide.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faithmap import Model
from faithmap.errors import ModelError, TargetError
from faithmap.methods import AblationCam, FullGrad, GradCam, HiResCam, XGradCam

ATOL = 1e-5
LABELS = torch.tensor([0, 1, 2, 3, 1])


class BodyHead(nn.Module):
    """``head(body(x))``: CAMs read ``body``'s output, which the tests compute by hand."""

    def __init__(self, head: nn.Module, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride, 1), nn.ReLU()
        )
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(x))
        return logits


class Gap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def linear_weights(net: BodyHead) -> torch.Tensor:
    """The weights ``(classes, channels)`` of a GAP network's linear layer."""
    return net.head.get_submodule("1").weight.detach()  # type: ignore[operator]


def gap_net(stride: int = 1) -> BodyHead:
    """body, global average pooling, linear: CAM's own architecture."""
    torch.manual_seed(0)
    return BodyHead(nn.Sequential(Gap(), nn.Linear(5, 4)), stride).eval()


def deep_net(stride: int = 2) -> BodyHead:
    """A head with a convolution and a ReLU after the layer, so gradients vary by position."""
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(5, 7, 3, padding=1), nn.ReLU(), Gap(), nn.Linear(7, 4))
    return BodyHead(head, stride).eval()


def layer_and_gradient(net: BodyHead, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = net.body(images).detach().requires_grad_(True)
    scores = net.head(maps).gather(1, LABELS[:, None]).sum()
    (gradient,) = torch.autograd.grad(scores, maps)
    return maps.detach(), gradient


def up(cam: torch.Tensor) -> torch.Tensor:
    return F.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)


def explain(method: Any, net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return method.explain(Model(net, batch_size=8), images, LABELS).attributions  # type: ignore[no-any-return]


# ------------------------------------------------------------------ hand-written computations
def test_hires_cam_is_the_elementwise_product_summed(images: torch.Tensor) -> None:
    net = deep_net()
    maps, gradient = layer_and_gradient(net, images)
    expected = up(torch.einsum("nkhw,nkhw->nhw", gradient, maps).relu().unsqueeze(1))
    ours = explain(HiResCam(layer="body"), net, images)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


def test_hires_cam_on_a_gap_network_is_cam(images: torch.Tensor) -> None:
    net = gap_net()
    maps = net.body(images).detach()
    weights = linear_weights(net)[LABELS]  # CAM: the class's linear weights
    cam = torch.einsum("nk,nkhw->nhw", weights, maps) / (16 * 16)
    ours = explain(HiResCam(layer="body", relu=False), net, images)
    torch.testing.assert_close(ours, cam.unsqueeze(1), atol=ATOL, rtol=0)


def test_xgrad_cam_weights_by_activation_share(images: torch.Tensor) -> None:
    net = deep_net()
    maps, gradient = layer_and_gradient(net, images)
    n, k = maps.shape[:2]
    weights = torch.zeros(n, k)
    for i in range(n):
        for c in range(k):
            total = maps[i, c].sum()
            if total != 0:
                weights[i, c] = (maps[i, c] / total * gradient[i, c]).sum()
    expected = up(torch.einsum("nk,nkhw->nhw", weights, maps).relu().unsqueeze(1))
    ours = explain(XGradCam(layer="body"), net, images)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


def test_xgrad_cam_on_a_gap_network_is_grad_cam(images: torch.Tensor) -> None:
    # The gradient is constant over a map, so its activation-weighted mean is Grad-CAM's mean.
    net = gap_net()
    assert bool((net.body(images).sum(dim=(2, 3)) > 0).all())
    ours = explain(XGradCam(layer="body", relu=False), net, images)
    grad_cam = explain(GradCam(layer="body", relu=False), net, images)
    torch.testing.assert_close(ours, grad_cam, atol=ATOL, rtol=0)


def test_ablation_cam_zeroes_each_channel_in_turn(images: torch.Tensor) -> None:
    net = deep_net()
    maps = net.body(images).detach()
    with torch.no_grad():
        score = net.head(maps).gather(1, LABELS[:, None])
        drops = []
        for c in range(maps.shape[1]):
            ablated = maps.clone()
            ablated[:, c] = 0
            drops.append((score - net.head(ablated).gather(1, LABELS[:, None])) / score)
    weights = torch.cat(drops, dim=1)
    expected = up(torch.einsum("nk,nkhw->nhw", weights, maps).relu().unsqueeze(1))
    ours = explain(AblationCam(layer="body"), net, images)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


def test_ablation_cam_on_a_gap_network_has_the_closed_form(images: torch.Tensor) -> None:
    # Zeroing channel k of a GAP network lowers the logit by w_ck * mean(A_k).
    net = gap_net()
    maps = net.body(images).detach()
    weights = linear_weights(net)[LABELS]
    with torch.no_grad():
        score = net(images).gather(1, LABELS[:, None])
    channel = weights * maps.mean(dim=(2, 3)) / score
    expected = torch.einsum("nk,nkhw->nhw", channel, maps).unsqueeze(1)
    ours = explain(AblationCam(layer="body", relu=False), net, images)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


class Counted(nn.Module):
    """Counts the calls of the wrapped network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out: torch.Tensor = self.net(x)
        return out


def test_ablation_cam_ablates_many_channels_per_forward_pass(images: torch.Tensor) -> None:
    counted = Counted(deep_net())
    explanation = AblationCam(layer="net.body").explain(Model(counted, batch_size=16), images)
    channels, rows = 5, 5 * (5 + 1)
    # the predicted class, the channel count (one input), then the rows 16 at a time
    assert counted.calls == 1 + 1 + math.ceil(rows / 16)
    assert explanation.cost.forward == 5 + 1 + 5 * (channels + 1)


def test_ablation_cam_refuses_a_zero_score(images: torch.Tensor) -> None:
    net = gap_net()
    with torch.no_grad():
        for parameter in net.head.parameters():
            parameter.zero_()
    with pytest.raises(TargetError, match="divides by the target score"):
        explain(AblationCam(layer="body"), net, images)


class FullGradNet(nn.Module):
    """conv with bias, batch norm, ReLU, strided conv with bias, ReLU, GAP, linear."""

    def __init__(self, width: int = 4, channels: int = 3) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.fc = nn.Linear(width, 4)
        with torch.no_grad():
            assert self.norm.running_mean is not None and self.norm.running_var is not None
            self.norm.running_mean.uniform_(-0.3, 0.3)
            self.norm.running_var.uniform_(0.5, 1.5)
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)
        self.eval()

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input and the three bias layers' outputs, then the logits."""
        z1 = self.conv1(x)
        z2 = self.norm(z1)
        z3 = self.conv2(z2.relu())
        return [x, z1, z2, z3, self.fc(z3.relu().mean(dim=(2, 3)))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)[-1]


def scaled(values: torch.Tensor) -> torch.Tensor:
    flat = values.abs().flatten(1)
    low = flat.min(dim=1).values
    high = flat.max(dim=1).values
    return ((values.abs().flatten(1) - low[:, None]) / (high - low)[:, None]).view_as(values)


def test_full_grad_matches_the_reference_algorithm(images: torch.Tensor) -> None:
    net = FullGradNet()
    x = images.clone().requires_grad_(True)
    *features, logits = net.parts(x)
    chosen = logits.gather(1, LABELS[:, None]).sum()
    grads = torch.autograd.grad(chosen, features)
    norm = net.norm
    assert norm.running_mean is not None and norm.running_var is not None
    folded = norm.bias - norm.running_mean * norm.weight / torch.sqrt(norm.running_var + norm.eps)
    assert net.conv1.bias is not None and net.conv2.bias is not None
    biases = [net.conv1.bias, folded, net.conv2.bias]
    bias_terms = [g * b.detach().view(1, -1, 1, 1) for g, b in zip(grads[1:], biases, strict=True)]
    # The full-gradient decomposition is exact for this ReLU network: the terms add to the logit.
    total = (grads[0] * images).sum(dim=(1, 2, 3)) + sum(t.sum(dim=(1, 2, 3)) for t in bias_terms)
    total = total + net.fc.bias.detach()[LABELS]
    torch.testing.assert_close(total, logits.detach().gather(1, LABELS[:, None])[:, 0])
    expected = scaled(grads[0] * images).sum(dim=1, keepdim=True)
    for term in bias_terms:
        resized = F.interpolate(scaled(term), (16, 16), mode="bilinear", align_corners=True)
        expected = expected + resized.sum(dim=1, keepdim=True)
    ours = explain(FullGrad(), net, images)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "net",
    [
        pytest.param(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), Gap()), id="groupnorm"),
        pytest.param(
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 14, 14]), Gap()), id="layernorm"
        ),
    ],
)
def test_full_grad_refuses_layers_whose_bias_it_cannot_separate(
    net: nn.Module, images: torch.Tensor
) -> None:
    with pytest.raises(ModelError, match="cannot separate"):
        FullGrad().explain(net, images, 0)


def test_full_grad_refuses_batch_statistics_and_position_wise_linears(
    images: torch.Tensor,
) -> None:
    unkept = nn.BatchNorm2d(4, track_running_stats=False)
    no_stats = nn.Sequential(nn.Conv2d(3, 4, 3), unkept, Gap())
    with pytest.raises(ModelError, match="running statistics"):
        FullGrad().explain(no_stats.eval(), images, 0)
    training = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Gap()).train()
    with pytest.raises(ModelError, match="training mode"):
        FullGrad().explain(Model(training, eval_mode=False), images, 0)
    tokens = nn.Sequential(nn.Conv2d(3, 4, 3), Permute(), nn.Linear(4, 2), nn.Flatten())
    with pytest.raises(ModelError, match="linear layer over positions"):
        FullGrad().explain(tokens, images, 0)
    with pytest.raises(ModelError, match=r"needs an nn\.Module"):
        FullGrad().explain(lambda x: x.flatten(1)[:, :3], images, 0)


class Permute(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


# ------------------------------------------------------------------ pytorch-grad-cam agreement
def _stub_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names pytorch-grad-cam imports from torchvision at import time, never called here."""

    def unused(*_: Any, **__: Any) -> None:
        raise AssertionError("a stubbed torchvision name was called")

    vision = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    for name in ("Compose", "Normalize", "ToTensor"):
        setattr(transforms, name, unused)
    functional.resize = unused  # type: ignore[attr-defined]
    vision.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    for module in (vision, transforms, functional):
        monkeypatch.setitem(sys.modules, module.__name__, module)


@pytest.fixture
def grad_cam_package(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    _stub_torchvision(monkeypatch)
    package: types.ModuleType = pytest.importorskip(
        "pytorch_grad_cam", reason="pip install --no-deps grad-cam ttach (see module docstring)"
    )
    return package


def class_score(label: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def score(output: torch.Tensor) -> torch.Tensor:
        return output[label]

    return score


def theirs(
    package: types.ModuleType, name: str, net: nn.Module, layers: list[nn.Module], x: torch.Tensor
) -> torch.Tensor:
    """pytorch-grad-cam's map: ReLU, then min-max scaled to [0, 1] per image."""
    targets = [class_score(int(c)) for c in LABELS]
    with getattr(package, name)(model=net, target_layers=layers) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=targets)).unsqueeze(1)


def min_max(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(2, 3), keepdim=True)
    return (maps - low) / (maps.amax(dim=(2, 3), keepdim=True) - low)


@pytest.mark.parametrize(
    ("method", "name"),
    [
        (HiResCam(layer="body"), "HiResCAM"),
        (XGradCam(layer="body"), "XGradCAM"),
        # The layer follows a ReLU, so pytorch-grad-cam zeroes channels, as the paper does.
        (AblationCam(layer="body"), "AblationCAM"),
    ],
    ids=["hires_cam", "xgrad_cam", "ablation_cam"],
)
def test_cams_agree_with_pytorch_grad_cam(
    method: Any, name: str, grad_cam_package: types.ModuleType, images: torch.Tensor
) -> None:
    # stride 1: the layer keeps the input's size, so no resizing (OpenCV there, torch here).
    net = deep_net(stride=1)
    reference = theirs(grad_cam_package, name, net, [net.body], images)
    ours = min_max(explain(method, net, images))
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_full_grad_agrees_with_pytorch_grad_cam_where_definitions_coincide(
    grad_cam_package: types.ModuleType, images: torch.Tensor
) -> None:
    # pytorch-grad-cam scales each channel of a term alone, the paper's code each term as a
    # whole; with one input channel and one channel per layer the two are the same. Its final
    # min-max scaling of the sum only rescales the map.
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1),
        nn.BatchNorm2d(1),
        nn.ReLU(),
        nn.Conv2d(1, 1, 3, padding=1),
        nn.ReLU(),
        Gap(),
        nn.Linear(1, 4),
    )
    torch.manual_seed(4)
    with torch.no_grad():  # positive weights on positive images: no ReLU is dead
        for module in net.modules():
            for name, parameter in module.named_parameters(recurse=False):
                low, high = (-0.5, 0.5) if name == "bias" else (0.2, 1.0)
                parameter.uniform_(low, high)
    net.eval()
    gray = images[:, :1]
    reference = theirs(grad_cam_package, "FullGrad", net, [], gray)
    ours = min_max(explain(FullGrad(), net, gray))
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)
