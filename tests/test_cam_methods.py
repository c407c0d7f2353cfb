"""Class activation maps: Captum agreement, closed-form oracles, token maps and errors."""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

import faithmap
from conftest import TinyNet
from faithmap import Model
from faithmap.data import make_shapes
from faithmap.errors import ConstantMapWarning
from faithmap.methods import EigenCam, GradCam, GradCamPlusPlus, LayerCam, ScoreCam
from faithmap.methods.layers import token_grid
from faithmap.zoo import load_builtin

ATOL = 1e-5
CAMS = ("grad_cam", "grad_cam_pp", "score_cam", "layer_cam", "eigen_cam")


def fixed(net: nn.Module) -> Model:
    """The model at a given batch size: no time spent measuring one."""
    return Model(net, batch_size=8)


# ------------------------------------------------------------------ Captum agreement
# With the ReLU, a sample whose class evidence is nowhere positive in the layer has an all-zero
# Grad-CAM (Captum's too): faithmap rightly warns (ConstantMapWarning, tested in
# test_input_sizes.py); these tests compare values, so that warning is not an error here.
EXPECTED_ZERO_MAPS = pytest.mark.filterwarnings("ignore::faithmap.errors.ConstantMapWarning")


@EXPECTED_ZERO_MAPS
@pytest.mark.parametrize("layer", ["features.3", "features.2", "features.0"])
def test_grad_cam_agrees_with_captum(layer: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    labels = torch.tensor([0, 1, 2, 3, 1])
    ours = faithmap.explain(fixed(tiny_net), images, method="grad_cam", layer=layer, target=labels)
    module = tiny_net.get_submodule(layer)
    coarse = LayerGradCam(tiny_net, module).attribute(images, target=labels, relu_attributions=True)
    theirs = LayerAttribution.interpolate(coarse, (16, 16), interpolate_mode="bilinear")
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


def test_grad_cam_agrees_with_captum_on_the_builtin_cnn() -> None:
    cnn = load_builtin("cnn")
    data = make_shapes(4, seed=3)
    # One batch of 4, as Captum runs it, so both see the same float32 convolutions.
    ours = GradCam(layer="features", relu=False).explain(
        Model(cnn, batch_size=4), data.images, data.labels
    )
    coarse = LayerGradCam(cnn, cnn.features).attribute(data.images, target=data.labels)
    theirs = LayerAttribution.interpolate(coarse, (64, 64), interpolate_mode="bilinear")
    torch.testing.assert_close(ours.attributions, theirs, atol=ATOL, rtol=0)


# ------------------------------------------------------------------ oracles on a GAP network
class GapNet(nn.Module):
    """conv, ReLU, conv, global average pooling, linear: the architecture CAM needs."""

    def __init__(self, pool: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.last = nn.Conv2d(6, 5, 3, padding=1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(self.last(self.pool(self.stem(x))).mean(dim=(2, 3)))
        return logits


@pytest.fixture
def gap_net() -> GapNet:
    torch.manual_seed(3)
    return GapNet().eval()


def _class_weights(net: GapNet, labels: torch.Tensor) -> torch.Tensor:
    return net.fc.weight[labels].detach()[:, :, None, None]


@pytest.mark.parametrize("pool", [False, True])
def test_grad_cam_of_a_gap_network_is_cam(pool: bool, images: torch.Tensor) -> None:
    """Zhou et al.: CAM_c = sum_k w_ck A_k; Grad-CAM's weights are w_ck / (h w)."""
    torch.manual_seed(3)
    net = GapNet(pool=pool).eval()
    labels = torch.tensor([0, 1, 2, 3, 0])
    with torch.no_grad():
        maps = net.last(net.pool(net.stem(images)))
    cam = (_class_weights(net, labels) * maps).sum(1, keepdim=True) / maps[0, 0].numel()
    for relu in (False, True):  # the paper's ReLU acts on the layer's grid, before upsampling
        expected = cam.relu() if relu else cam
        if pool:  # an 8 x 8 map upsampled to the 16 x 16 input
            expected = F.interpolate(expected, size=(16, 16), mode="bilinear", align_corners=False)
        ours = GradCam(layer="last", relu=relu).explain(fixed(net), images, labels).attributions
        torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)


@EXPECTED_ZERO_MAPS
def test_grad_cam_pp_and_layer_cam_of_a_gap_network(gap_net: GapNet, images: torch.Tensor) -> None:
    """With S = sum_k w_k mean(A_k), dS/dA_k = w_k / Z everywhere (Z = h w positions)."""
    labels = torch.tensor([3, 2, 1, 0, 1])
    with torch.no_grad():
        maps = gap_net.last(gap_net.stem(images))
    z = maps[0, 0].numel()
    g = _class_weights(gap_net, labels) / z
    # Grad-CAM++: a_ij = g^2 / (2 g^2 + sum(A) g^3) = 1 / (2 + sum(A) g), w_k = Z a ReLU(g).
    alpha = 1 / (2 + maps.sum(dim=(2, 3), keepdim=True) * g)
    expected_pp = (z * alpha * g.relu() * maps).sum(1, keepdim=True).relu()
    ours_pp = GradCamPlusPlus(layer="last").explain(fixed(gap_net), images, labels).attributions
    torch.testing.assert_close(ours_pp, expected_pp, atol=ATOL, rtol=1e-5)
    # Layer-CAM: ReLU(sum_k ReLU(g_k) A_k).
    expected_layer = (g.relu() * maps).sum(1, keepdim=True).relu()
    ours_layer = LayerCam(layer="last").explain(fixed(gap_net), images, labels).attributions
    torch.testing.assert_close(ours_layer, expected_layer, atol=ATOL, rtol=0)


def test_in_place_operations_after_the_layer_do_not_change_the_map(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    in_place = nn.Sequential(
        *[nn.ReLU(inplace=True) if isinstance(m, nn.ReLU) else m for m in plain]
    )
    for name in ("grad_cam", "score_cam", "eigen_cam"):
        # One batch size for both, so both run the very same float32 convolutions.
        expected = faithmap.explain(
            Model(plain, batch_size=5), images, method=name, layer="0", target=1
        )
        ours = faithmap.explain(
            Model(in_place, batch_size=5), images, method=name, layer="0", target=1
        )
        torch.testing.assert_close(ours.attributions, expected.attributions, atol=0, rtol=0)


class RaisesInBackward(torch.autograd.Function):
    """Identity forward; a backward pass through it fails."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the backward pass went below the layer")


class NoBackwardBelow(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        guarded = RaisesInBackward.apply(x)  # type: ignore[no-untyped-call]
        out: torch.Tensor = self.net(guarded)
        return out


@pytest.mark.parametrize("name", ["grad_cam", "grad_cam_pp", "layer_cam"])
def test_backward_stops_at_the_layer_and_passes_are_counted(
    name: str, tiny_net: TinyNet, images: torch.Tensor
) -> None:
    guarded = NoBackwardBelow(tiny_net).eval()
    # A given batch size: measuring one times input gradients, which this net refuses.
    result = faithmap.explain(Model(guarded, batch_size=2), images, method=name, target=2)
    assert (result.cost.forward, result.cost.backward) == (5, 5)
    assert float(result.attributions.abs().sum()) > 0


# ------------------------------------------------------------------ Score-CAM
class MaskedSum(nn.Module):
    """A 1x1 convolution giving maps x, 1 - x and 0.5; logits sum x over two known regions."""

    def __init__(self) -> None:
        super().__init__()
        self.maps = nn.Conv2d(1, 3, 1)
        assert self.maps.bias is not None
        with torch.no_grad():
            self.maps.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).view(3, 1, 1, 1))
            self.maps.bias.copy_(torch.tensor([0.0, 1.0, 0.5]))
        region = torch.zeros(2, 8, 8)
        region[0, :4, :4] = 1.0
        region[1] = 1.0 - region[0]
        self.register_buffer("region", region)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.maps(x)  # the layer Score-CAM reads; the output is a known function of x
        return torch.einsum("nhw,khw->nk", x[:, 0], self.region)


def test_score_cam_on_a_known_function() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 1:3, 1:3] = 1.0  # a 2 x 2 square inside region 0
    x[1, 0, 2:5, 2:5] = 1.0  # a 3 x 3 square, 4 pixels in region 0 and 5 in region 1
    target = torch.tensor([0, 1])
    result = ScoreCam(layer="maps").explain(fixed(MaskedSum()), x, target)
    # Masks are x, 1 - x (both already in [0, 1]) and 0 (a constant map); masked inputs are
    # x * x = x, (1 - x) * x = 0 and 0, so the target scores are (|square in region|, 0, 0).
    in_region = torch.tensor([4.0, 5.0])
    weights = torch.stack([in_region, torch.zeros(2), torch.zeros(2)], 1).softmax(1)
    maps = torch.cat([x, 1 - x, torch.full_like(x, 0.5)], 1)
    expected = (weights[:, :, None, None] * maps).sum(1, keepdim=True).relu()
    torch.testing.assert_close(result.attributions, expected, atol=ATOL, rtol=0)
    assert expected[0, 0, 1, 1] == pytest.approx(
        math.e**4 / (math.e**4 + 2) + 0.5 / (math.e**4 + 2)
    )
    # One pass for the maps, then one per (input, channel); none backward.
    assert (result.cost.forward, result.cost.backward) == (2 + 2 * 3, 0)


def test_score_cam_channel_batching_does_not_change_the_result(
    tiny_net: TinyNet, images: torch.Tensor
) -> None:
    one = faithmap.explain(Model(tiny_net, batch_size=1), images, method="score_cam", target=1)
    many = faithmap.explain(Model(tiny_net, batch_size=13), images, method="score_cam", target=1)
    torch.testing.assert_close(one.attributions, many.attributions, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ Eigen-CAM
class Loadings(nn.Module):
    """A 1x1 convolution: maps A = sum_j p_j v_j^T from input patterns p_j and loadings v_j."""

    def __init__(self, loadings: torch.Tensor) -> None:
        super().__init__()
        self.maps = nn.Conv2d(loadings.shape[1], loadings.shape[0], 1, bias=False)
        with torch.no_grad():
            self.maps.weight.copy_(loadings[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps: torch.Tensor = self.maps(x)
        return maps.mean(dim=(2, 3))


def test_eigen_cam_projects_on_the_known_first_component() -> None:
    # Orthogonal loadings with norms 5 and 1: the first principal direction is v1 / |v1|.
    v1, v2 = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])
    p = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    p[:, 0, :, :4] = 0.0  # pattern 1 on the right half, pattern 2 on the left half:
    p[:, 1, :, 4:] = 0.0  # orthogonal, so the projection is p1 |v1| exactly
    p[:, 0] *= 4
    result = EigenCam(layer="maps").explain(fixed(Loadings(torch.stack([v1, v2], 1))), p, target=0)
    torch.testing.assert_close(result.attributions, 5 * p[:, :1], atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize(("sign", "expected_sign"), [(1.0, 1.0), (-1.0, -1.0)])
def test_eigen_cam_sign_convention(sign: float, expected_sign: float) -> None:
    """The direction is signed so its loadings sum to >= 0; v = sign * (3, -1, 2)."""
    v = sign * torch.tensor([3.0, -1.0, 2.0])
    p = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)) + 0.5
    result = EigenCam(layer="maps").explain(fixed(Loadings(v[:, None])), p, target=0)
    # A = p v^T; direction s v / |v| with s making s * sum(v) >= 0; projection s p |v|.
    expected = expected_sign * p * v.norm()
    torch.testing.assert_close(result.attributions, expected, atol=ATOL, rtol=1e-5)


def test_eigen_cam_centring_and_relu() -> None:
    v = torch.tensor([1.0, 2.0])
    p = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    result = EigenCam(layer="maps", center=True, relu=True).explain(
        fixed(Loadings(v[:, None])), p, 0
    )
    expected = ((p - p.mean()) * v.norm()).relu()
    torch.testing.assert_close(result.attributions, expected, atol=ATOL, rtol=1e-5)


# ------------------------------------------------------------------ token maps
class TinyTransformer(nn.Module):
    """Patch embedding (4 x 4 patches), a class token, one attention block, a head on it."""

    def __init__(self, registers: int = 0) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, stride=4)
        self.prefix = nn.Parameter(torch.randn(1, 1 + registers, 8))
        self.norm = nn.LayerNorm(8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.prefix.expand(x.shape[0], -1, -1), tokens], 1)
        normed = self.norm(tokens)
        mixed = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        logits: torch.Tensor = self.head(mixed[:, 0])
        return logits


def _reference_grad_cam(
    net: nn.Module, layer: str, x: torch.Tensor, target: int, prefix: int
) -> torch.Tensor:
    """Grad-CAM on tokens by hand: ``out[:, prefix:]`` laid out row-major on the 4 x 4 grid."""
    seen: list[torch.Tensor] = []
    handle = net.get_submodule(layer).register_forward_hook(
        lambda _, __, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        score = net(x)[:, target].sum()
        (grad,) = torch.autograd.grad(score, seen[0])
    finally:
        handle.remove()
    maps, grads = (
        t[:, prefix:].reshape(x.shape[0], 4, 4, -1).permute(0, 3, 1, 2)
        for t in (seen[0].detach(), grad)
    )
    cam = (grads.mean(dim=(2, 3), keepdim=True) * maps).sum(1, keepdim=True)
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.mark.parametrize(("registers", "layer"), [(0, "norm"), (4, "norm"), (0, "attention")])
def test_grad_cam_on_transformer_tokens(registers: int, layer: str, images: torch.Tensor) -> None:
    """``attention`` returns a tuple; only its class token reaches the head, so its map is 0."""
    torch.manual_seed(0)
    net = TinyTransformer(registers).eval()
    flat = pytest.warns(ConstantMapWarning, match=r"grad_cam returned an all-zero map.*'layer'")
    with flat if layer == "attention" else contextlib.nullcontext():
        ours = GradCam(layer=layer, relu=False).explain(fixed(net), images, target=1).attributions
    assert ours.shape == (5, 1, 16, 16)
    expected = _reference_grad_cam(net, layer, images, 1, 1 + registers)
    torch.testing.assert_close(ours, expected, atol=ATOL, rtol=0)
    coarse = F.avg_pool2d(ours, 4)
    if layer == "attention":
        assert bool((coarse == 0).all())
    else:  # non-trivial: the 4 x 4 map varies across patches
        assert float(coarse.flatten(1).std(1).min()) > 1e-4


@pytest.mark.parametrize("name", CAMS)
def test_every_cam_runs_on_a_token_layer(name: str, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = TinyTransformer(registers=2).eval()
    result = faithmap.explain(fixed(net), images, method=name, layer="norm", target=0)
    assert result.attributions.shape == (5, 1, 16, 16)
    assert bool(torch.isfinite(result.attributions).all())
    assert float(result.attributions.abs().amax()) > 0


class Tokens(nn.Module):
    """Emits a class token of 1000s, then one token per 4 x 4 patch: its pixel mean times v."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = F.avg_pool2d(x[:, :1], 4).flatten(1)  # (N, 16), row-major
        v = torch.tensor([1.0, 2.0, 2.0])
        tokens = patches[:, :, None] * v
        return torch.cat([torch.full((x.shape[0], 1, 3), 1000.0), tokens], 1)


def test_token_layout_drops_the_class_token_and_is_row_major() -> None:
    net = nn.Sequential()
    net.add_module("tokens", Tokens())
    net.add_module("pool", nn.Flatten())
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 4:8, 8:12] = 1.0  # patch (row 1, column 2)
    coarse = torch.zeros(1, 1, 4, 4)
    coarse[0, 0, 1, 2] = 3.0  # the patch's mean, 1, times |v| = 3
    expected = F.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    result = EigenCam(layer="tokens").explain(fixed(net), x, target=0)
    torch.testing.assert_close(result.attributions, expected, atol=ATOL, rtol=1e-5)


def test_small_vit_from_the_zoo() -> None:
    vit = load_builtin("vit")
    data = make_shapes(4, seed=4)
    ours = GradCam(layer="blocks.2", relu=False).explain(fixed(vit), data.images, data.labels)
    assert ours.attributions.shape == (4, 1, 64, 64)
    assert float(ours.attributions.abs().amax()) > 0
    # Its logits read only the class token of the last block, so the patch tokens of
    # "blocks.3" get exactly zero gradient (the zoo's documented property).
    with pytest.warns(ConstantMapWarning, match=r"Name another 'layer' \(now 'blocks.3'\)"):
        last = GradCam(layer="blocks.3", relu=False).explain(fixed(vit), data.images, data.labels)
    assert bool((last.attributions == 0).all())
    eigen = EigenCam(layer="blocks.3").explain(fixed(vit), data.images)
    assert float(eigen.attributions.flatten(1).std(1).min()) > 0
    # Layer-CAM on the trained ViT puts its mass on the shape: on average more than twice the
    # shape's share of the image.
    layer = LayerCam(layer="blocks.2").explain(fixed(vit), data.images, data.labels)
    masks = data.masks.float()
    inside = (layer.attributions * masks).flatten(1).sum(1) / layer.attributions.flatten(1).sum(1)
    assert float((inside / masks.flatten(1).mean(1)).mean()) > 2.0


# ------------------------------------------------------------------ layers and errors
def test_default_layer_is_the_last_convolution(tiny_net: TinyNet, images: torch.Tensor) -> None:
    default = GradCam().explain(fixed(tiny_net), images, 1).attributions
    named = GradCam(layer="features.3").explain(fixed(tiny_net), images, 1).attributions
    assert torch.equal(default, named)


def test_unknown_layer_lists_the_valid_names(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(faithmap.InvalidParameterError, match=r"Did you mean 'features.3'") as err:
        GradCam(layer="feature.3").explain(fixed(tiny_net), images, 0)
    assert "'features.0', 'features.1'" in str(err.value)
    assert "'head'" in str(err.value)


@pytest.mark.parametrize("name", CAMS)
def test_plain_callable_is_refused(name: str, tiny_net: TinyNet, images: torch.Tensor) -> None:
    def callable_model(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits: torch.Tensor = tiny_net(x)
            return logits

    with pytest.raises(faithmap.ModelError, match=r"needs an nn\.Module"):
        faithmap.explain(callable_model, images, method=name, target=0)


def test_model_without_convolution_needs_a_layer(images: torch.Tensor) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with pytest.raises(faithmap.InvalidParameterError, match=r"no nn.Conv2d.*'0', '1'"):
        GradCam().explain(fixed(net), images, 0)


def test_layer_with_a_flat_output_is_refused_and_hooks_are_removed(
    tiny_net: TinyNet, images: torch.Tensor
) -> None:
    with pytest.raises(faithmap.ShapeError, match=r"\(N, C, h, w\) maps or \(N, T, D\) tokens"):
        GradCam(layer="head").explain(fixed(tiny_net), images, 0)
    assert all(not m._forward_hooks for m in tiny_net.modules())


def test_a_layer_run_twice_is_refused(images: torch.Tensor) -> None:
    shared = nn.ReLU()
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        shared,
        nn.Conv2d(4, 4, 3, padding=1),
        shared,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    with pytest.raises(faithmap.ModelError, match="ran 2 times"):
        GradCam(layer="1").explain(fixed(net), images, 0)
    assert all(not m._forward_hooks for m in net.modules())


def test_wrong_prefix_tokens_is_explained(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    net = TinyTransformer().eval()
    with pytest.raises(faithmap.ShapeError, match="prefix_tokens"):
        GradCam(layer="norm", prefix_tokens=3).explain(fixed(net), images, 0)


def test_sequence_first_tokens_are_refused(images: torch.Tensor) -> None:
    class SequenceFirst(TinyTransformer):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.embed(x).flatten(2).permute(2, 0, 1)  # (T, N, D)
            logits: torch.Tensor = self.head(self.norm(tokens).mean(0))
            return logits

    with pytest.raises(faithmap.ShapeError, match="batch_first=True"):
        GradCam(layer="norm").explain(fixed(SequenceFirst().eval()), images, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"layer": 3}, "'layer' parameter of GradCam must be a layer name"),
        ({"prefix_tokens": -1}, "'prefix_tokens' parameter of GradCam must be an int >= 0"),
        ({"activation": "probits"}, "'activation' parameter"),
    ],
)
def test_invalid_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(faithmap.InvalidParameterError, match=message):
        GradCam(**params)  # type: ignore[arg-type]


def test_score_cam_checks_its_fill() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match="'fill' parameter"):
        ScoreCam(fill="zeros")  # type: ignore[arg-type]


def test_onnx_model_is_refused(tiny_net: TinyNet, images: torch.Tensor, tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():  # the legacy exporter needs no onnxscript; it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(tiny_net, (images[:1],), str(path), dynamo=False)
    onnx_model = Model.from_onnx(path, batch_size=1)
    with pytest.raises(faithmap.ModelError, match=r"OnnxSession.*ONNX session has no layers"):
        GradCam().explain(onnx_model, images[:1], 0)


def test_output_rows_counts_passes_and_hands_over_each_batch(tiny_net: TinyNet) -> None:
    """The Model method the CAMs stream through: one forward (and backward) per row."""
    model = Model(tiny_net, batch_size=3)
    seen: list[tuple[list[int], list[int], bool]] = []

    def consume(samples: torch.Tensor, indices: torch.Tensor, outputs: torch.Tensor) -> None:
        assert outputs.shape == (samples.shape[0], 4)
        seen.append((samples.tolist(), indices.tolist(), torch.is_inference_mode_enabled()))

    rows = torch.rand(2, 3, 16, 16)
    model.output_rows(2, 2, lambda s, _: rows[s], consume, device=rows.device)
    assert seen == [([0, 0, 1], [0, 1, 0], True), ([1], [1], True)]
    assert (model.ledger.forward, model.ledger.backward) == (4, 0)
    model.output_rows(
        2, 1, lambda s, _: rows[s], lambda *_: None, backward=True, device=rows.device
    )
    assert (model.ledger.forward, model.ledger.backward) == (6, 2)


def test_a_layer_the_score_does_not_depend_on_is_refused() -> None:
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(faithmap.ModelError, match="does not depend on the layer 'maps'"):
        GradCam(layer="maps").explain(fixed(MaskedSum()), x, 0)


@pytest.mark.parametrize(
    ("tokens", "size", "prefix", "expected"),
    [
        (197, (224, 224), None, (1, 14, 14)),  # ViT-B/16: a class token
        (261, (224, 224), None, (5, 16, 16)),  # a class token and 4 registers, 14 x 14 patches
        (57, (64, 60), None, (1, 8, 7)),  # 8 x 8 patches, the last 4 columns ignored
        (49, (16, 16), None, (0, 7, 7)),  # no class token; a grid with the image's shape
        (21, (16, 16), 5, (5, 4, 4)),
    ],
)
def test_token_grid(
    tokens: int, size: tuple[int, int], prefix: int | None, expected: tuple[int, int, int]
) -> None:
    assert token_grid(tokens, size, prefix) == expected


@pytest.mark.parametrize("name", CAMS)
def test_cams_of_the_builtin_cnn_find_the_object(name: str) -> None:
    """The share of positive map mass inside the shape, over the shape's share of the image."""
    data = make_shapes(4, seed=4)
    masks = data.masks.float()

    def concentration(maps: torch.Tensor) -> torch.Tensor:
        maps = maps.clamp(min=0)
        inside = (maps * masks).flatten(1).sum(1) / maps.flatten(1).sum(1)
        return inside / masks.flatten(1).mean(1)

    result = faithmap.explain(
        fixed(load_builtin("cnn")), data.images, method=name, target=data.labels
    )
    assert float(concentration(result.attributions).min()) > 2.0
    noise = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert float(concentration(noise).max()) < 1.2


def test_a_model_naming_its_cam_layer_gets_it_by_default() -> None:
    """The shipped vit names blocks.2: its last convolution is the patch embedding."""
    vit = faithmap.zoo.load_builtin("vit")
    x = faithmap.data.make_shapes(2, seed=1).images
    default = faithmap.explain(vit, x, method="grad_cam", target=0)
    named = faithmap.explain(vit, x, method="grad_cam", target=0, layer="blocks.2")
    torch.testing.assert_close(default.attributions, named.attributions)
    embedding = faithmap.explain(vit, x, method="grad_cam", target=0, layer="patch_embed")
    assert not torch.allclose(default.attributions, embedding.attributions)
