"""Memory format: channels_last weights and image batches (:mod:`faithmap.core.memory_format`).

channels_last changes only the order in which a convolution sums its floats, so every method's
map must equal the contiguous one up to float32 rounding. The tolerance is relative to the
map's largest magnitude: ``1e-4 * max|map|``. float32 keeps 24 bits (eps 1.2e-7); a reordered
sum of K terms differs by about sqrt(K) eps relative, and the built-in models chain a handful of
layers (forward and backward), so differences of 1e-7 to 1e-5 of the map's scale are rounding,
while any real change (a wrong layout, a dropped channel, a mis-restored weight) moves the map by
far more. Measured on CPU (1 thread, 2 images): at most 4e-6 of the scale on the CNN and 4e-5
on the ResNet (LRP's and XGrad-CAM's ratios amplify rounding most).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import faithmap
from faithmap import Model
from faithmap.bench.config import BenchConfig
from faithmap.cli import app
from faithmap.data import make_shapes
from faithmap.errors import FaithmapError, InvalidParameterError
from faithmap.zoo import load_builtin
from test_precision import LIGHT

RELATIVE_TOLERANCE = 1e-4
"""Of the map's largest magnitude: float32 rounding of reordered sums (see the module doc)."""


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return make_shapes(1, seed=0).images


@pytest.fixture(scope="module")
def nets() -> dict[str, nn.Module]:
    return {name: load_builtin(name) for name in ("cnn", "resnet", "vit")}


def _maps(net: nn.Module, images: torch.Tensor, method: str, memory_format: str) -> torch.Tensor:
    model = Model(net, batch_size=16, memory_format=memory_format)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", faithmap.errors.ConstantMapWarning)
        exp = faithmap.explain(model, images, method=method, **LIGHT.get(method, {}))
    assert exp.model["memory_format"] == memory_format
    return exp.attributions


def _cases() -> list[Any]:
    cases = []
    for method in faithmap.METHODS.names():
        if getattr(faithmap.METHODS[method], "needs_attention", False):
            cases.append(pytest.param("vit", method, id=f"vit-{method}"))
        else:
            cases += [pytest.param(n, method, id=f"{n}-{method}") for n in ("cnn", "resnet")]
    return cases


@pytest.mark.parametrize(("net_name", "method"), _cases())
def test_channels_last_map_equals_contiguous(
    nets: dict[str, nn.Module], images: torch.Tensor, net_name: str, method: str
) -> None:
    net = nets[net_name]
    contiguous = _maps(net, images, method, "contiguous")
    channels_last = _maps(net, images, method, "channels_last")
    assert channels_last.stride() == contiguous.stride()  # NHWC stays inside the model
    scale = float(contiguous.abs().amax())
    difference = float((channels_last - contiguous).abs().amax())
    assert difference <= RELATIVE_TOLERANCE * scale + 1e-12


def _weights(net: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]]:
    return [(t, t.detach().clone(), t.stride()) for t in [*net.parameters(), *net.buffers()]]


def test_the_users_module_is_given_back_as_it_was(images: torch.Tensor) -> None:
    net = load_builtin("resnet")
    first_conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    # one weight the user keeps in channels_last themselves: it must stay so, not be "restored"
    first_conv.weight.data = first_conv.weight.data.contiguous(memory_format=torch.channels_last)
    before = _weights(net)
    storages = [t.data_ptr() for t, _, _ in before]
    model = Model(net, batch_size=16, memory_format="channels_last")
    for method in ("integrated_gradients", "occlusion", "grad_cam"):
        faithmap.explain(model, images, method=method)
    for (tensor, values, stride), storage in zip(before, storages, strict=True):
        assert torch.equal(tensor, values)
        assert tensor.stride() == stride
        assert tensor.data_ptr() == storage  # its own tensor back, not an equal copy
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d)][1:]
    assert all(w.is_contiguous() for w in convs)


class _RaisesMidway(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.conv.weight.is_contiguous(memory_format=torch.channels_last)
        raise RuntimeError("boom")


def test_weights_are_restored_when_the_model_raises(images: torch.Tensor) -> None:
    net = _RaisesMidway()
    model = Model(net, batch_size=4, memory_format="channels_last")
    with pytest.raises(FaithmapError, match="boom"):
        model.outputs(images)
    assert net.conv.weight.is_contiguous()
    assert not net.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_memory_format_is_recorded_and_part_of_a_runs_identity(images: torch.Tensor) -> None:
    model = Model(load_builtin("cnn"), batch_size=8, memory_format="channels_last")
    exp = faithmap.explain(model, images, method="saliency")
    assert exp.model["memory_format"] == "channels_last"
    assert "memory_format='channels_last'" in repr(model)
    assert faithmap.explain(Model(load_builtin("cnn")), images, method="saliency").model[
        "memory_format"
    ] == ("contiguous")
    base: dict[str, Any] = {"models": ["cnn"], "methods": ["saliency"], "n_samples": 2}
    plain = BenchConfig(**base)
    assert BenchConfig(**base, memory_format="contiguous").hash == plain.hash
    assert BenchConfig(**base, memory_format="channels_last").hash != plain.hash
    with pytest.raises(InvalidParameterError, match="'memory_format' parameter of BenchConfig"):
        BenchConfig(**base, memory_format="nhwc")


def test_measured_batch_sizes_are_kept_apart_by_memory_format(images: torch.Tensor) -> None:
    net = load_builtin("cnn")
    Model(net).outputs(images.expand(40, -1, -1, -1))
    Model(net, memory_format="channels_last").outputs(images.expand(40, -1, -1, -1))
    kinds = {key[-1] for key in Model(net).measured_batch_sizes}
    assert "fp32+channels_last" in kinds and False in kinds  # fp32 keys end with the pass kind


def test_refusals_say_what_to_do() -> None:
    with pytest.raises(InvalidParameterError, match="must be one of contiguous, channels_last"):
        Model(nn.Linear(2, 2), memory_format="nhwc")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match=r"not an nn\.Module"):
        Model(lambda x: x.flatten(1), memory_format="channels_last")
    tabular = Model(nn.Linear(4, 3), batch_size=4, memory_format="channels_last")
    with pytest.raises(InvalidParameterError, match=r"4-D image batches.*2-D batch"):
        tabular.outputs(torch.zeros(2, 4))
    with pytest.raises(InvalidParameterError, match="4-D image batches"):
        faithmap.explain(tabular, torch.zeros(2, 4), method="saliency")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "a fine film", "--memory-format", "channels_last"], "--memory-format apply"),
        (["--generate", "the cat", "--memory-format", "channels_last"], "--memory-format"),
        (["--memory-format", "nhwc"], "--memory-format must be one of contiguous"),
    ],
)
def test_cli_refuses_memory_format_where_it_cannot_apply(
    args: list[str], message: str, tmp_path: Any
) -> None:
    result = CliRunner().invoke(app, ["explain", *args, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output and "error:" in result.output


def test_cli_explains_with_channels_last(tmp_path: Any) -> None:
    args = ["explain", "--method", "saliency", "--memory-format", "channels_last"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
