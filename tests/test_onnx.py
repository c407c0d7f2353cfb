"""ONNX: the built-in CNN exported to ONNX gives the same attributions as the torch module."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import onnxruntime  # noqa: F401  (a test dependency, never skipped)
import pytest
import torch

import faithmap
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin

METHODS: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 16, "stride": 16},
    "feature_ablation": {"regions": "patches:16"},
    "kernel_shap": {"regions": "patches:16", "n_samples": 32},
    "lime": {"regions": "patches:16", "n_samples": 32},
    "sobol": {"regions": "patches:32", "n_design": 8},
    "hsic": {"regions": "patches:16", "n_design": 32},
    "rise": {"n_masks": 32},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    net = load_builtin("cnn")
    with warnings.catch_warnings():  # the legacy exporter needs no onnxscript; it is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.zeros(1, 3, 64, 64),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return path


@pytest.mark.parametrize("name", METHODS)
def test_same_attributions_through_onnx_as_through_torch(name: str, exported: Path) -> None:
    data = make_shapes(2, seed=2)
    params = METHODS[name]
    onnx_model = faithmap.Model.from_onnx(exported, batch_size=32)
    torch_model = faithmap.Model(load_builtin("cnn"), batch_size=32)
    ours = faithmap.explain(onnx_model, data.images, method=name, target=data.labels, **params)
    torch_result = faithmap.explain(
        torch_model, data.images, method=name, target=data.labels, **params
    )
    scale = float(torch_result.attributions.abs().max())
    torch.testing.assert_close(
        ours.attributions, torch_result.attributions, atol=1e-4 * scale, rtol=1e-3
    )
    assert ours.cost.forward == torch_result.cost.forward


def test_onnx_outputs_match_and_the_target_is_predicted(exported: Path) -> None:
    x = make_shapes(5, seed=3).images
    model = faithmap.Model.from_onnx(exported, batch_size=2)
    torch.testing.assert_close(
        model.outputs(x), load_builtin("cnn")(x).detach(), atol=1e-4, rtol=1e-4
    )


def test_missing_onnxruntime_says_how_to_install(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(faithmap.FaithmapError, match=r'pip install "faithmap\[onnx\]"'):
        faithmap.Model.from_onnx(exported)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(faithmap.FaithmapError, match="No ONNX file"):
        faithmap.Model.from_onnx(tmp_path / "missing.onnx")
