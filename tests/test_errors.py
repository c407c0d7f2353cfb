"""Bad input gives a FaithmapError that names the problem and the fix; the model is unharmed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import faithmap
from conftest import TinyNet
from faithmap import (
    FileProblemError,
    InvalidParameterError,
    MissingDependencyError,
    ModelError,
    ShapeError,
    TargetError,
)
from faithmap.core.targets import TargetLike
from faithmap.metrics import deletion, insertion
from faithmap.zoo.loaders import load_model


def test_errors_are_faithmap_errors_and_builtin_kinds() -> None:
    assert issubclass(InvalidParameterError, ValueError)
    for cls in (InvalidParameterError, ShapeError, TargetError, ModelError):
        assert issubclass(cls, faithmap.FaithmapError)


def test_wrong_rank(tiny_net: TinyNet) -> None:
    with pytest.raises(ShapeError, match=r"read as 1-D signals \(N, C, T\).*unsqueeze\(0\)"):
        faithmap.explain(tiny_net, torch.rand(3, 16, 16), method="occlusion")
    with pytest.raises(ShapeError, match=r"images of shape \(N, C, H, W\). Got shape \(2, 3"):
        faithmap.explain(tiny_net, torch.rand(2, 3, 16, 16, 1), method="occlusion")


def test_not_a_tensor(tiny_net: TinyNet) -> None:
    with pytest.raises(ShapeError, match=r"torch.Tensor"):
        faithmap.explain(tiny_net, np.zeros((1, 3, 8, 8)), method="saliency")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf(tiny_net: TinyNet, images: torch.Tensor, bad: float) -> None:
    images[2, 0, 3, 3] = bad
    with pytest.raises(ShapeError, match=r"NaN or inf.*samples \[2\]"):
        faithmap.explain(tiny_net, images, method="saliency")


def test_empty_batch(tiny_net: TinyNet) -> None:
    with pytest.raises(ShapeError, match=r"empty batch"):
        faithmap.explain(tiny_net, torch.rand(0, 3, 16, 16), method="saliency")


def test_integer_inputs(tiny_net: TinyNet) -> None:
    with pytest.raises(ShapeError, match=r"floating point.*x.float\(\)"):
        faithmap.explain(tiny_net, torch.zeros(1, 3, 16, 16, dtype=torch.uint8), method="saliency")


@pytest.mark.parametrize("target", [4, -1, torch.tensor([0, 1, 2, 9, 0])])
def test_target_out_of_range(tiny_net: TinyNet, images: torch.Tensor, target: TargetLike) -> None:
    with pytest.raises(TargetError, match=r"out of range.*4 outputs.*\[0, 3\]"):
        faithmap.explain(tiny_net, images, method="saliency", target=target)


def test_target_of_wrong_length(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(TargetError, match=r"3 entries but the batch has 5"):
        faithmap.explain(tiny_net, images, method="saliency", target=[0, 1, 2])


def test_float_target(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(TargetError, match=r"integer class indices"):
        faithmap.explain(tiny_net, images, method="saliency", target=torch.zeros(5))


def test_callable_target_of_wrong_shape(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(TargetError, match=r"one score per row"):
        faithmap.explain(tiny_net, images, method="saliency", target=lambda out: out)


def test_gradient_method_on_a_callable_without_autograd(images: torch.Tensor) -> None:
    weights = np.random.default_rng(0).normal(size=(3 * 16 * 16, 4))

    def numpy_model(x: torch.Tensor) -> np.ndarray:
        return x.flatten(1).numpy() @ weights

    with pytest.raises(ModelError, match=r"needs gradients.*occlusion"):
        faithmap.explain(numpy_model, images, method="integrated_gradients")
    occluded = faithmap.explain(numpy_model, images, method="occlusion")
    assert occluded.attributions.shape == (5, 1, 16, 16)


def test_gradient_method_on_a_module_that_detaches(images: torch.Tensor) -> None:
    class Detaching(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.detach().flatten(1)[:, :4]

    with pytest.raises(ModelError, match=r"does not depend on its input through autograd"):
        faithmap.explain(Detaching(), images, method="saliency")


def test_model_that_raises_leaves_model_as_found(tiny_net: TinyNet) -> None:
    tiny_net.train()
    two_channels = torch.rand(2, 2, 5, 5)
    with pytest.raises(ModelError, match=r"raised RuntimeError on a batch of shape \(2, 2, 5, 5\)"):
        faithmap.explain(faithmap.Model(tiny_net, batch_size=2), two_channels, method="saliency")
    assert all(m.training for m in tiny_net.modules())
    assert all(p.requires_grad for p in tiny_net.parameters())


def test_model_with_wrong_output_shape(images: torch.Tensor) -> None:
    with pytest.raises(
        ModelError,
        match=r"one output row per sample: shape \((\d+), ...\) for a batch of \1. Got \(2, 3\)",
    ):
        faithmap.explain(lambda x: torch.zeros(2, 3), images, method="occlusion")


def test_not_a_model() -> None:
    with pytest.raises(ModelError, match=r"nn.Module or a callable"):
        faithmap.Model(42)  # type: ignore[arg-type]


def test_unknown_method_lists_valid_names(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(InvalidParameterError, match=r"Unknown method 'lmie'.*integrated_gradients"):
        faithmap.explain(tiny_net, images, method="lmie")


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(InvalidParameterError, match=r"unexpected parameter.*n_masks"):
        faithmap.get_method("rise", masks=10)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "integrated_gradients",
            {"steps": 0},
            r"'steps' parameter of IntegratedGradients must be an int >= 1. Got 0",
        ),
        ("integrated_gradients", {"rule": "simpson"}, r"'rule' parameter .* Got 'simpson'"),
        ("rise", {"keep_probability": 1.5}, r"'keep_probability' .* <= 1.0. Got 1.5"),
        ("occlusion", {"fill": "zeros"}, r"'fill' parameter .* Got 'zeros'"),
        ("saliency", {"reduce": "median"}, r"'reduce' parameter .* Got 'median'"),
    ],
)
def test_bad_parameters(name: str, params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        faithmap.get_method(name, **params)


def test_occlusion_window_larger_than_image(tiny_net: TinyNet) -> None:
    with pytest.raises(InvalidParameterError, match=r"larger than the image"):
        faithmap.explain(tiny_net, torch.rand(1, 3, 6, 6), method="occlusion", window=8)


def test_metric_errors(tiny_net: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(InvalidParameterError, match=r"'steps' parameter of insertion"):
        insertion(tiny_net, images, torch.rand(5, 1, 16, 16), steps=0)
    with pytest.raises(ShapeError, match=r"must have shape .* matching the inputs"):
        deletion(tiny_net, images, torch.rand(5, 1, 8, 8))
    with pytest.raises(InvalidParameterError, match=r"'fill' parameter"):
        deletion(tiny_net, images, torch.rand(5, 1, 16, 16), fill="grey")


def test_missing_model_file_is_a_file_problem_caught_as_oserror(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.pt"
    with pytest.raises(OSError, match=r"No model file or known model name") as caught:
        load_model(missing)
    assert isinstance(caught.value, FileProblemError)
    assert isinstance(caught.value, faithmap.FaithmapError)


def test_refused_pickle_is_a_file_problem(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(FileProblemError, match=r"trust_pickle=True"):
        load_model(path)


def test_missing_optional_package_is_caught_as_importerror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(ImportError, match=r"faithmap\[onnx\]") as caught:
        faithmap.Model.from_onnx(tmp_path / "model.onnx")
    assert isinstance(caught.value, MissingDependencyError)
    assert isinstance(caught.value, faithmap.FaithmapError)


def test_missing_transformers_names_the_text_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from faithmap.text.loading import load_text_classifier

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"faithmap\[text\]"):
        load_text_classifier("hf:some-model")


def test_missing_pandas_in_evaluate_is_a_missing_dependency(
    monkeypatch: pytest.MonkeyPatch, tiny_net: TinyNet, images: torch.Tensor
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pandas is not installed") as caught:
        faithmap.evaluate(tiny_net, images, torch.rand(images.shape[0], 1, 16, 16))
    assert isinstance(caught.value, MissingDependencyError)


def test_src_raises_only_subclasses_of_faithmap_error() -> None:
    src = Path(faithmap.__file__).parent
    bare = [
        f"{path.relative_to(src)}:{number}"
        for path in sorted(src.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "raise FaithmapError(" in line
    ]
    assert bare == [], f"raise a subclass of FaithmapError instead at {bare}"
