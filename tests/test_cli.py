"""The ``faithmap`` command: methods, explain (built-in sample and image file), bench, errors."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imsave
from typer.testing import CliRunner

import faithmap
from faithmap.cli import app, parse_param, read_image
from faithmap.core.explanation import Explanation

runner = CliRunner()


def test_methods_lists_every_registered_method_with_its_description() -> None:
    result = runner.invoke(app, ["methods"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in faithmap.METHODS.names():
        assert name in result.output
        assert faithmap.METHODS.describe(name) in result.output
    assert len(faithmap.METHODS.names()) >= 4


def _check_explain_output(result_output: str, out: Path, stem: str) -> None:
    image = stem.split("-")[0]
    line = next(x for x in result_output.splitlines() if x.startswith(f"{image}: predicted "))
    for metric in ("insertion", "deletion"):
        value = float(line.split(f"{metric} ")[1].split(",")[0].split(";")[0])
        assert 0.0 <= value <= 1.0
    png, raw = out / f"{stem}.png", out / f"{stem}.safetensors"
    assert png.stat().st_size > 0
    saved = Explanation.load(raw)
    assert saved.attributions.shape == (1, 1, 64, 64)
    assert bool(torch.isfinite(saved.attributions).all())


def test_explain_builtin_sample_writes_overlay_and_attributions(tmp_path: Path) -> None:
    args = [
        "explain",
        "--method",
        "rise",
        "-p",
        "n_masks=64",
        "--sample",
        "3",
        "--batch-size",
        "16",
    ]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "sample3: true class " in result.output
    _check_explain_output(result.output, tmp_path, "sample3-cnn-rise")
    saved = Explanation.load(tmp_path / "sample3-cnn-rise.safetensors")
    assert saved.config["n_masks"] == 64


def test_explain_image_file_with_target(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((40, 50, 4))  # RGBA, not square, not 64 x 64
    path = tmp_path / "photo.png"
    imsave(path, image)
    out = tmp_path / "out"
    args = ["explain", str(path), "--method", "saliency", "-t", "2", "--out", str(out)]
    args += ["--batch-size", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"explained {faithmap.data.CLASS_NAMES[2]};" in result.output
    _check_explain_output(result.output, out, "photo-cnn-saliency")
    saved = Explanation.load(out / "photo-cnn-saliency.safetensors")
    assert saved.target is not None and int(saved.target[0]) == 2


def test_explain_lima_on_an_image_file_saves_the_region_ranking(tmp_path: Path) -> None:
    shapes = faithmap.data.make_shapes(1, seed=5)
    path = tmp_path / "shape.png"
    imsave(path, (shapes.images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    out = tmp_path / "out"
    args = ["explain", str(path), "--method", "lima", "-p", "regions=patches:16", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    _check_explain_output(result.output, out, "shape-cnn-lima")
    saved = Explanation.load(out / "shape-cnn-lima.safetensors")
    assert saved.ranking is not None
    assert sorted(saved.ranking[0].tolist()) == list(range(16))  # every 16 px patch ranked once
    assert saved.config["regions"] == "patches:16"
    first = int(saved.ranking[0, 0])  # the rank map gives the top patch the value R = 16
    row, col = divmod(first, 4)
    patch = saved.attributions[0, 0, row * 16 : (row + 1) * 16, col * 16 : (col + 1) * 16]
    assert bool((patch == 16).all()) and float(saved.attributions.max()) == 16


def test_read_image_expands_grey_and_drops_alpha(tmp_path: Path) -> None:
    grey = np.linspace(0, 1, 30 * 20).reshape(30, 20)
    path = tmp_path / "grey.png"
    imsave(path, grey, cmap="gray")
    tensor = read_image(path)
    assert tensor.shape == (1, 3, 64, 64)
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    torch.testing.assert_close(tensor[:, 0], tensor[:, 2])
    assert float(tensor.std()) > 0.1


def test_explain_unknown_method_exits_2_with_valid_names() -> None:
    result = runner.invoke(app, ["explain", "--method", "nope"])
    assert result.exit_code == 2
    assert "error: Unknown method 'nope'" in result.output
    assert "Traceback" not in result.output
    for name in faithmap.METHODS.names():
        assert name in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "no-such-file.png"], "does not exist"),
        (["explain", "--param", "steps"], "key=value"),
        (["explain", "--param", "bogus=1"], "unexpected parameter"),
        (["bench", "--models", "vgg"], "Unknown model 'vgg'"),
        (["bench", "--metrics", "accuracy"], "Unknown metric 'accuracy' in the benchmark"),
        (["bench", "--param", "n_masks=3"], "method.key=value"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_missing_model_file_and_package_are_one_error_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = runner.invoke(app, ["explain", "--model", str(tmp_path / "no-such-model.pt")])
    monkeypatch.setitem(sys.modules, "transformers", None)  # the text extra is not installed
    no_package = runner.invoke(app, ["explain", "--text", "a fine film", "--model", "hf:any"])
    for result, message in ((missing, "No model file"), (no_package, "faithmap[text]")):
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_parse_param_types() -> None:
    assert parse_param("steps=16") == ("steps", 16)
    assert parse_param("p=0.5") == ("p", 0.5)
    assert parse_param("absolute=True") == ("absolute", True)
    assert parse_param("fill=blur") == ("fill", "blur")


def test_bench_writes_one_row_per_sample_model_method_metric(tmp_path: Path) -> None:
    args = ["bench", "--models", "cnn", "--methods", "saliency,rise", "--samples", "2"]
    args += ["--metrics", "insertion,deletion"]  # the default suite adds localisation metrics
    args += ["-p", "rise.n_masks=32", "--out", str(tmp_path), "--no-progress", "--batch-size", "16"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "saliency" in result.output and "rise" in result.output

    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 1 * 2 * 2  # samples × models × methods × metrics
    keys = {(r["model"], r["method"], r["metric"], r["sample"]) for r in rows}
    assert len(keys) == len(rows)
    for row in rows:
        assert math.isfinite(float(row["value"])) and 0.0 <= float(row["value"]) <= 1.0
        assert float(row["explain_seconds"]) > 0.0 and float(row["metric_forward"]) == 29.0
    rise = [r for r in rows if r["method"] == "rise"]
    assert all(json.loads(r["params"])["n_masks"] == 32 for r in rise)
    assert all(float(r["explain_forward"]) == 33.0 for r in rise)  # target + 32 masks

    document = json.loads((tmp_path / "results.json").read_text())
    assert document["config"]["method_params"]["rise"] == {"n_masks": 32}
    assert len(document["rows"]) == len(rows)
    assert len(document["summary"]) == 2


def test_explain_a_folder_skips_and_reports_a_corrupt_image(tmp_path: Path) -> None:
    shapes = faithmap.data.make_shapes(2, seed=7)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        pixels = (shapes.images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        imsave(folder / f"good{i}.png", pixels)
    (folder / "broken.png").write_bytes(b"this is not a PNG")
    (folder / "notes.txt").write_text("not an image either, and not tried")
    out = tmp_path / "out"
    args = ["explain", str(folder), "--method", "saliency", "--batch-size", "8"]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.png" in result.output
    assert "notes.txt" not in result.output
    for i in range(2):
        assert f"good{i}: predicted {faithmap.data.CLASS_NAMES[int(shapes.labels[i])]}" in (
            result.output
        )
        assert (out / f"good{i}-cnn-saliency.png").stat().st_size > 0
    saved = Explanation.load(out / "images-cnn-saliency.safetensors")
    assert saved.attributions.shape == (2, 1, 64, 64)


def _fitted_estimator(tmp_path: Path) -> tuple[Path, Path]:
    """A logistic regression whose class 1 means income > debt, pickled; and five rows."""
    import pickle

    import pandas
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pandas.DataFrame(rng.normal(size=(200, 3)), columns=["income", "debt", "noise"])
    estimator = LogisticRegression().fit(frame, (frame.income > frame.debt).astype(int))
    model = tmp_path / "model.pkl"
    model.write_bytes(pickle.dumps(estimator))
    rows = tmp_path / "rows.csv"
    frame.head(5).to_csv(rows, index=False)
    return model, rows


def test_explain_csv_rows_refuses_a_pickle_without_the_flag(tmp_path: Path) -> None:
    model, rows = _fitted_estimator(tmp_path)
    result = runner.invoke(app, ["explain", str(rows), "--model", str(model)])
    assert result.exit_code == 2
    assert "--trust-pickle" in result.output and "Traceback" not in result.output


def test_explain_csv_rows_names_the_columns(tmp_path: Path) -> None:
    import pandas

    model, rows = _fitted_estimator(tmp_path)
    out = tmp_path / "out"
    args = ["explain", str(rows), "--model", str(model), "--trust-pickle", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = pandas.read_csv(out / "rows-kernel_shap.csv")
    assert set(table.feature) == {"income", "debt", "noise"} and len(table) == 15
    # The decision depends on income and debt only: noise is never a row's top column.
    top = table.loc[table.groupby("row").attribution.apply(lambda a: a.abs().idxmax())]
    assert set(top.feature) <= {"income", "debt"}


def test_explain_text_with_the_builtin_classifier(tmp_path: Path) -> None:
    from faithmap.text import make_sentences

    sentence = make_sentences(1, seed=3)  # explained for its predicted class
    out = tmp_path / "out"
    args = ["explain", "--text", sentence.texts[0], "--method", "occlusion", "--out", str(out)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    page = (out / "text-occlusion.html").read_text()
    assert "<html" in page.lower()
    # The printed text is "word[score]" per word; the top word is one of the deciding words.
    scored = re.findall(r"(\S+?)\[([-+][0-9.e+-]+)\]", result.output)
    assert [word for word, _ in scored] == sentence.texts[0].split()
    top = max(range(len(scored)), key=lambda i: float(scored[i][1]))
    assert top in sentence.deciding[0]


def test_metrics_lists_every_registered_metric() -> None:
    result = runner.invoke(app, ["metrics"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name, spec in faithmap.metrics.METRICS.items():
        assert (f"{name} *" if spec.needs_masks else name) in result.output
