"""A user's own ONNX classifier and image folder, through the CLI and ``faithmap bench``.

The stand-in is an ONNX classifier that expects normalised BGR 48 x 192 strips and returns
probabilities; its images and masks are PNG files in folders. Every number faithmap prints or
stores is compared with the same computation on a torch model that does the preprocessing by
hand and is read without a softmax.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from typer.testing import CliRunner

import faithmap
from faithmap.bench import BenchConfig, run_bench
from faithmap.bench.sources import DataSource
from faithmap.cli import app
from faithmap.data import make_shapes, read_image
from faithmap.errors import InvalidParameterError
from faithmap.metrics import insertion, pointing_game
from faithmap.testing.standins import ProbabilityClassifier, export_onnx, strip_images

pytest.importorskip("onnxruntime")
runner = CliRunner()
DECLARED = ["--size", "48x192", "--channels", "bgr", "--mean", "0.5", "--std", "0.5"]
IMAGES = 3


class HandPreprocessed(nn.Module):
    """The stand-in with its preprocessing written out in torch."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ProbabilityClassifier()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net((x.flip(1) - 0.5) / 0.5)
        return out


@pytest.fixture(scope="module")
def user_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user")
    shapes = make_shapes(IMAGES, seed=3)
    strips = strip_images(shapes.images)
    masks = strip_images(shapes.masks.float().expand(-1, 3, -1, -1))[:, 0] > 0.5
    (root / "photos").mkdir()
    (root / "masks").mkdir()
    for i in range(IMAGES):
        pixels = (strips[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / "photos" / f"img{i}.png")
        Image.fromarray(masks[i].numpy().astype(np.uint8) * 255).save(
            root / "masks" / f"img{i}.png"
        )
    export_onnx(ProbabilityClassifier(), root / "direction.onnx", (3, 48, 192))
    return root


def _images(root: Path) -> Tensor:
    return torch.cat([read_image(root / "photos" / f"img{i}.png", None) for i in range(IMAGES)])


def _reference() -> faithmap.Model:
    return faithmap.Model(HandPreprocessed(), outputs="probabilities", batch_size=16)


def test_explain_cli_prints_the_aucs_of_the_declared_model(user_files: Path) -> None:
    out = user_files / "explained"
    args = ["explain", str(user_files / "photos" / "img0.png"), "--model"]
    args += [str(user_files / "direction.onnx"), *DECLARED, "--outputs", "probabilities"]
    args += ["--method", "rise", "-p", "n_masks=60", "-p", "seed=0", "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    printed = {k: float(v) for k, v in re.findall(r"(insertion|deletion) ([0-9.]+)", result.output)}
    x = _images(user_files)[:1]
    reference = _reference()
    explanation = faithmap.explain(reference, x, method="rise", n_masks=60, seed=0)
    expected = insertion(reference, x, explanation).values
    assert printed["insertion"] == pytest.approx(float(expected[0]), abs=2e-4)
    saved = faithmap.Explanation.load(out / "img0-direction-rise.safetensors")
    assert saved.model["outputs"] == "probabilities"
    assert saved.model["preprocessing"]["channels"] == "bgr"


def test_explain_cli_refuses_a_bad_size(user_files: Path) -> None:
    args = ["explain", str(user_files / "photos" / "img0.png"), "--size", "48by192"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "error: The 'size' of --size must be 'S' or 'HxW'" in result.output


def test_bench_on_a_user_model_file_and_image_folder_with_masks(user_files: Path) -> None:
    out = user_files / "bench"
    args = ["bench", "--models", str(user_files / "direction.onnx"), "--data"]
    args += [str(user_files / "photos"), "--masks", str(user_files / "masks"), *DECLARED]
    args += ["--outputs", "probabilities", "--methods", "rise", "-p", "rise.n_masks=60"]
    args += ["--metrics", "insertion,pointing_game", "-m", "insertion.steps=8"]
    args += ["--out", str(out), "--no-progress"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()
    assert "direction" in (out / "report.html").read_text()
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["model"] for row in rows} == {"direction"} and len(rows) == 2 * IMAGES

    x = _images(user_files)
    masks = torch.cat(
        [read_image(user_files / "masks" / f"img{i}.png", None)[:, :1] > 0.5 for i in range(IMAGES)]
    )
    reference = _reference()
    explanation = faithmap.explain(reference, x, method="rise", n_masks=60, seed=0)
    expected = {
        "insertion": insertion(reference, x, explanation, steps=8).values,
        "pointing_game": pointing_game(explanation, masks).values,
    }
    for row in rows:
        wanted = float(expected[row["metric"]][int(row["sample"])])
        assert float(row["value"]) == pytest.approx(wanted, abs=2e-4), row

    again = runner.invoke(app, args, terminal_width=200)  # resumes: nothing new to run
    assert again.exit_code == 0, again.output
    with (out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)


def test_bench_takes_models_and_tensors_from_python(tmp_path: Path) -> None:
    shapes = make_shapes(2, seed=1)
    model = faithmap.Model(HandPreprocessed(), outputs="probabilities", batch_size=8)
    config = BenchConfig(
        models=[model],
        data=(
            strip_images(shapes.images),
            strip_images(shapes.masks.float().expand(-1, 3, -1, -1))[:, :1] > 0.5,
        ),
        methods=["saliency"],
        metrics=["insertion"],
        metric_params={"insertion": {"steps": 8}},
        out=tmp_path,
    )
    rows = run_bench(config, progress=False)
    assert [row.model for row in rows] == ["HandPreprocessed"] * 2
    x = strip_images(shapes.images)
    explanation = faithmap.explain(model, x, method="saliency")
    expected = insertion(model, x, explanation, steps=8).values
    torch.testing.assert_close(
        torch.tensor([row.value for row in rows], dtype=torch.float64), expected.double()
    )
    assert isinstance(config.data, DataSource) and config.n_samples == 2


def test_mask_metrics_need_masks(user_files: Path) -> None:
    with pytest.raises(InvalidParameterError, match="pointing_game score against ground-truth"):
        BenchConfig(
            models=["cnn"],
            data=str(user_files / "photos"),
            methods=["saliency"],
            metrics=["pointing_game"],
        )


def test_model_tables_declare_outputs_and_preprocessing(user_files: Path) -> None:
    table = {
        "spec": str(user_files / "direction.onnx"),
        "outputs": "probabilities",
        "channels": "bgr",
        "mean": [0.5],
        "std": [0.5],
        "name": "ocr",
    }
    config = BenchConfig(models=[table, "cnn"], methods=["rise"], metrics=["insertion"])
    source = config.model_source("ocr")
    assert source.outputs == "probabilities" and source.preprocessing is not None
    assert source.preprocessing.channels == "bgr"
    identity = config.identity()["models"]
    assert identity[1] == "cnn" and identity[0]["fingerprint"]
