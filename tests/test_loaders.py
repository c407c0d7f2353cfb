"""Loaders: every kind of model file or name round-trips a locally made model; errors say why."""

from __future__ import annotations

import argparse
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import faithmap
from faithmap.errors import (
    FaithmapError,
    FileProblemError,
    InvalidParameterError,
    MissingDependencyError,
    ModelError,
)
from faithmap.zoo import SmallCNN, load_builtin
from faithmap.zoo.libraries import HuggingFaceLogits
from faithmap.zoo.loaders import load_model

CNN = "faithmap.zoo.architectures:SmallCNN"


@pytest.fixture
def net() -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, so that they must round-trip
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def assert_same_outputs(loaded: faithmap.Model, original: nn.Module, x: torch.Tensor) -> None:
    assert isinstance(loaded, faithmap.Model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.outputs(x), original(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["cnn", "resnet", "vit"])
def test_builtin_names(name: str, x: torch.Tensor) -> None:
    model = load_model(name, batch_size=4)
    assert isinstance(model.module, nn.Module) and not model.module.training
    assert_same_outputs(model, load_builtin(name), x)


def test_torchscript(net: SmallCNN, x: torch.Tensor, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated; files made with it remain
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(net, x[:1]), str(path))  # type: ignore[no-untyped-call]
    model = load_model(path, batch_size=4)
    assert isinstance(model.module, torch.jit.ScriptModule)
    assert_same_outputs(model, net, x)


@pytest.mark.parametrize("nest", [None, "state_dict", "model_state_dict", "model"])
def test_state_dict_with_architecture(
    net: SmallCNN, x: torch.Tensor, tmp_path: Path, nest: str | None
) -> None:
    path = tmp_path / "net.pth"
    state = net.state_dict()
    torch.save(state if nest is None else {nest: state, "epoch": 3}, path)
    model = load_model(path, architecture=CNN, options={"num_classes": 4}, batch_size=4)
    assert type(model.module) is SmallCNN and not model.module.training
    assert_same_outputs(model, net, x)


def test_safetensors_with_a_factory_function(tmp_path: Path) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(5, 2)
    path = tmp_path / "linear.safetensors"
    save_file({k: v.contiguous() for k, v in linear.state_dict().items()}, str(path))
    model = load_model(
        path, architecture="torch.nn:Linear", options={"in_features": 5, "out_features": 2}
    )
    rows = torch.randn(4, 5)
    assert_same_outputs(model, linear, rows)


def test_pickled_model_is_refused_without_trust(
    net: SmallCNN, x: torch.Tensor, tmp_path: Path
) -> None:
    path = tmp_path / "whole.pt"
    torch.save(net, path)
    with pytest.raises(
        FileProblemError, match=r"pickled .*\(faithmap\.zoo\.architectures\."
    ) as info:
        load_model(path)
    assert "trust_pickle=True" in str(info.value) and "--trust-pickle" in str(info.value)
    assert_same_outputs(load_model(path, trust_pickle=True, batch_size=4), net, x)
    with pytest.raises(InvalidParameterError, match="holds a whole model"):
        load_model(path, architecture=CNN, trust_pickle=True)


def test_checkpoint_with_python_objects_is_refused(net: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": net.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(
        FileProblemError, match=r"Refusing to load .*\(argparse\.Namespace, \.\.\.\)"
    ):
        load_model(path, architecture=CNN, options={"num_classes": 4})
    model = load_model(path, architecture=CNN, options={"num_classes": 4}, trust_pickle=True)
    assert type(model.module) is SmallCNN


def test_onnx(x: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(x)  # materialise the lazy layer
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():  # the legacy exporter needs no onnxscript; it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (x[:1],),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
            dynamo=False,
        )
    model = load_model(path, batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(model.outputs(x), net(x), rtol=1e-5, atol=1e-5)


def _tiny_vit_classifier() -> nn.Module:
    import transformers

    config = transformers.ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in ViTConfig's
    )
    torch.manual_seed(0)
    model: nn.Module = transformers.ViTForImageClassification(config)
    return model.eval()


def test_hugging_face_directory(tmp_path: Path) -> None:
    original = _tiny_vit_classifier()
    original.save_pretrained(tmp_path / "vit")  # type: ignore[operator]
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = original(pixels).logits
    for spec in (f"hf:{tmp_path / 'vit'}", tmp_path / "vit"):
        model = load_model(spec, batch_size=2)
        assert isinstance(model.module, HuggingFaceLogits)
        assert type(model.module.model) is type(original)
        with torch.no_grad():
            torch.testing.assert_close(model.outputs(pixels), expected, rtol=0, atol=0)


def test_hugging_face_image_processor_is_declared_once(tmp_path: Path) -> None:
    import transformers

    original = _tiny_vit_classifier()
    original.save_pretrained(tmp_path / "vit")  # type: ignore[operator]
    processor = transformers.ViTImageProcessor(
        size={"height": 16, "width": 16}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.5]
    )
    processor.save_pretrained(tmp_path / "vit")
    model = load_model(tmp_path / "vit", batch_size=2)
    assert model.preprocessing.size == (16, 16)
    assert model.preprocessing.mean == (0.5, 0.4, 0.3)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    prepared = processor(list(images), return_tensors="pt", do_rescale=False, do_resize=False)
    pixel_values = prepared.pixel_values  # already 16 x 16: no resampling on either side
    with torch.no_grad():
        expected = original(pixel_values).logits
        torch.testing.assert_close(model.outputs(images), expected, rtol=1e-5, atol=1e-5)
    given = load_model(tmp_path / "vit", batch_size=2, preprocessing={"mean": "half"})
    assert given.preprocessing.mean == (0.5, 0.5, 0.5)  # a declaration overrides the file


def test_hugging_face_without_a_head() -> None:
    import transformers

    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2
    )
    vit: nn.Module = transformers.ViTModel(config)
    headless = HuggingFaceLogits(vit.eval())
    with pytest.raises(ModelError, match="returns no 'logits'"):
        headless(torch.rand(1, 3, 16, 16))


def test_hugging_face_missing(tmp_path: Path) -> None:
    with pytest.raises(FileProblemError, match=r"No Hugging Face model .*save_pretrained"):
        load_model(f"hf:{tmp_path / 'absent'}")


@pytest.mark.parametrize(
    ("spec", "package", "install"),
    [
        ("torchvision:resnet18", "torchvision", "pip install torchvision"),
        ("timm:resnet18", "timm", "pip install timm"),
        ("hf:google/vit-base-patch16-224", "transformers", "pip install 'faithmap[text]'"),
    ],
)
def test_library_not_installed(
    spec: str, package: str, install: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` raise ImportError
    monkeypatch.setitem(sys.modules, f"{package}.models", None)
    imported = f"needs {package}, which could not be imported"
    with pytest.raises(MissingDependencyError, match=imported) as e:
        load_model(spec)
    assert install in str(e.value)


class _Weights:
    """What torchvision's weights enums offer: the URL of the default weights."""

    url = "https://download.pytorch.org/models/tiny-0123abcd.pth"


def _fake_torchvision(net: nn.Module) -> types.ModuleType:
    """A stand-in for ``torchvision.models`` with its get_model_weights / get_model API."""

    def get_model_weights(name: str) -> type:
        if name != "tiny":
            raise ValueError(f"Unknown model {name}")
        return type("TinyWeights", (), {"DEFAULT": _Weights()})

    def get_model(name: str, *, weights: object = None) -> nn.Module:
        assert weights is None
        torch.manual_seed(123)  # a different initialisation than `net`
        return SmallCNN(num_classes=4)

    models = types.ModuleType("torchvision.models")
    models.get_model_weights = get_model_weights  # type: ignore[attr-defined]
    models.get_model = get_model  # type: ignore[attr-defined]
    return models


def test_torchvision_weights_from_the_hub_cache(
    net: SmallCNN, x: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision.models", _fake_torchvision(net))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "tiny-0123abcd.pth"
    with pytest.raises(FileProblemError, match="are not on disk") as info:
        load_model("torchvision:tiny")
    assert str(expected) in str(info.value) and _Weights.url in str(info.value)
    expected.parent.mkdir(parents=True)
    torch.save(net.state_dict(), expected)
    assert_same_outputs(load_model("torchvision:tiny", batch_size=4), net, x)
    with pytest.raises(InvalidParameterError, match="names no torchvision model"):
        load_model("torchvision:huge")


def test_timm_weights_from_the_hugging_face_cache(
    net: SmallCNN, x: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    timm = types.ModuleType("timm")
    timm.is_model = lambda name: name == "tiny"  # type: ignore[attr-defined]
    timm.create_model = lambda name, pretrained: SmallCNN(num_classes=4)  # type: ignore[attr-defined]
    config = types.SimpleNamespace(hf_hub_id="timm/tiny.in1k")
    timm.models = types.SimpleNamespace(get_pretrained_cfg=lambda name: config)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", timm)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        FileProblemError, match=r"not in the Hugging Face cache .*'timm/tiny\.in1k'"
    ):
        load_model("timm:tiny")
    # The layout of the Hugging Face cache: a snapshot per revision, refs/main names the latest.
    repo = tmp_path / "models--timm--tiny.in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(repo / "snapshots" / "abc123" / "model.safetensors"))
    assert_same_outputs(load_model("timm:tiny", batch_size=4), net, x)
    with pytest.raises(InvalidParameterError, match="names no timm model"):
        load_model("timm:huge")


def test_state_dict_needs_an_architecture(net: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(InvalidParameterError, match=r"is a state dict .* 'package\.module:Class"):
        load_model(path)


@pytest.mark.parametrize(
    ("architecture", "options", "error", "message"),
    [
        ("SmallCNN", None, InvalidParameterError, "must be an import path"),
        (":SmallCNN", None, InvalidParameterError, "must be an import path"),
        ("faithmap_no_such_package:Net", None, FaithmapError, "Could not import"),
        ("faithmap.zoo.architectures:BigCNN", None, FaithmapError, "has no 'BigCNN'"),
        (CNN, {"channels": 3}, ModelError, "raised TypeError"),
        ("builtins:dict", None, ModelError, "returned dict, not an nn.Module"),
        (CNN, None, ModelError, "does not fit"),  # 6 classes by default, 4 in the file
    ],
)
def test_bad_architecture(
    net: SmallCNN,
    tmp_path: Path,
    architecture: str,
    options: dict[str, object] | None,
    error: type[Exception],
    message: str,
) -> None:
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(error, match=message):
        load_model(path, architecture=architecture, options=options)


def test_file_that_is_not_a_model(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FaithmapError, match=r"Could not read .* as a PyTorch file"):
        load_model(garbage)
    numbers = tmp_path / "numbers.pt"
    torch.save([1, 2, 3], numbers)
    with pytest.raises(ModelError, match="neither a model nor a state dict"):
        load_model(numbers, architecture=CNN)


@pytest.mark.parametrize("spec", ["no-such-model", "missing/net.pt"])
def test_unknown_spec(spec: str) -> None:
    with pytest.raises(FaithmapError, match="No model file or known model name") as info:
        load_model(spec)
    assert "'torchvision:NAME'" in str(info.value) and "cnn, resnet, vit" in str(info.value)


@pytest.mark.parametrize("spec", ["", 3, None])
def test_bad_spec_type(spec: object) -> None:
    with pytest.raises(InvalidParameterError, match="The 'spec' parameter of load_model"):
        load_model(spec)  # type: ignore[arg-type]


def test_library_name_without_model() -> None:
    with pytest.raises(InvalidParameterError, match="must name a model after 'timm'"):
        load_model("timm:")


def test_trust_pickle_must_be_a_bool() -> None:
    with pytest.raises(InvalidParameterError, match="The 'trust_pickle' parameter of load_model"):
        load_model("cnn", trust_pickle="yes")  # type: ignore[arg-type]
