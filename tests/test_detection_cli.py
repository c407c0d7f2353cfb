"""``faithmap explain --box x0,y0,x1,y1 --label K`` and ``--detection I``: one detection
explained, its box drawn on the overlay, and one ``error:`` line for each bad request."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from matplotlib.image import imsave
from matplotlib.patches import Rectangle
from typer.testing import CliRunner

from faithmap.cli import app
from faithmap.core.explanation import Explanation
from faithmap.data import CLASS_NAMES, make_shapes, make_shapes_scenes
from faithmap.errors import InvalidParameterError
from faithmap.testing.standins import GridDetector
from faithmap.viz import overlay

runner = CliRunner()
GRID = "faithmap.testing.standins:GridDetector"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 64 x 64 shapes image, the GridDetector stand-in's state dict, a tiny DETR directory."""
    root = tmp_path_factory.mktemp("detection-cli")
    image = root / "scene.png"
    imsave(image, make_shapes(1, seed=2).images[0].permute(1, 2, 0).numpy())
    weights = root / "grid.pt"
    torch.save(GridDetector(cells=4).state_dict(), weights)
    torch.manual_seed(0)
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        backbone_config=transformers.ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[1, 1],
            out_features=["stage2"],  # type: ignore[call-arg]  # a backbone keyword
        ),
        use_pretrained_backbone=False,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        num_queries=5,
        num_labels=3,
    )
    transformers.DetrForObjectDetection(config).save_pretrained(root / "detr")
    return {"image": image, "grid": weights, "detr": root / "detr"}


def grid_args(files: dict[str, Path], out: Path) -> list[str]:
    return [
        "explain",
        str(files["image"]),
        "--model",
        str(files["grid"]),
        "--architecture",
        GRID,
        "--objectness",
        "--batch-size",
        "16",
        "--out",
        str(out),
    ]


def assert_one_error(exit_code: int, output: str, message: str) -> None:
    """Exit status 2 and one ``error:`` line holding ``message`` (a note may precede it)."""
    assert exit_code == 2, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], output
    assert "Traceback" not in output


def explained_line(output: str) -> str:
    """The line about the image (a progress bar of transformers may precede it unbroken)."""
    line = next(line for line in output.splitlines() if "scene: explained " in line)
    return line[line.index("scene: explained ") :]


def test_explain_the_first_detection_with_grad_cam(files: dict[str, Path], tmp_path: Path) -> None:
    args = [*grid_args(files, tmp_path), "--detection", "0", "--method", "grad_cam"]
    result = runner.invoke(app, [*args, "-p", "layer=cnn.features"])
    assert result.exit_code == 0, result.output
    line = explained_line(result.output)
    assert " in box " in line and "(box score " in line
    for metric in ("insertion", "deletion"):
        value = float(line.split(f"{metric} ")[1].split(",")[0].split(";")[0])
        assert 0.0 <= value <= 1.0
    assert (tmp_path / "scene-grid-grad_cam.png").stat().st_size > 0
    saved = Explanation.load(tmp_path / "scene-grid-grad_cam.safetensors")
    assert saved.attributions.shape == (1, 1, 64, 64)
    assert float(saved.attributions.abs().amax()) > 0


def test_explain_a_given_box_with_occlusion(files: dict[str, Path], tmp_path: Path) -> None:
    """A perturbation method reads the raw outputs (activation=logits) without being told."""
    args = [*grid_args(files, tmp_path), "--box", "16,16,32,32", "--label", "2"]
    result = runner.invoke(app, [*args, "--method", "occlusion", "-p", "window=16"])
    assert result.exit_code == 0, result.output
    line = explained_line(result.output)
    assert line.startswith("scene: explained 2 in box 16.0, 16.0, 32.0, 32.0 (box score ")
    rise = runner.invoke(app, [*args, "--method", "rise", "-p", "n_masks=16"])
    assert rise.exit_code == 0, rise.output


def test_explain_a_hugging_face_detection(files: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "explain",
        str(files["image"]),
        "--model",
        f"hf:{files['detr']}",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(
        app, [*args, "--detection", "0", "--method", "saliency", "--batch-size", "16"]
    )
    assert result.exit_code == 0, result.output
    assert " in box " in explained_line(result.output)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--box", "0,0,80,20", "--label", "0"], "leaves the image of 64x64 pixels"),
        (["--box", "30,0,20,20", "--label", "0"], "must have x0 < x1 and y0 < y1"),
        (["--box", "0,0,16,16", "--label", "9"], "label 9 is not a class of the detector"),
        (["--box", "1,2,3"], "--box must be four numbers x0,y0,x1,y1"),
        (["--box", "0,0,16,16"], "either by a box and a label"),
        (["--detection", "40"], "so there is no detection 40"),
        (["--box", "0,0,16,16", "--label", "1", "--detection", "0"], "either by a box"),
        (["--detection", "0", "--target", "1"], "leave out --target"),
    ],
)
def test_bad_detection_requests_are_one_error_line(
    files: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, [*grid_args(files, tmp_path), "--method", "saliency", *extra])
    assert_one_error(result.exit_code, result.output, message)


def test_a_classifier_is_not_a_detector(files: dict[str, Path], tmp_path: Path) -> None:
    args = ["explain", str(files["image"]), "--model", "cnn", "--detection", "0"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)])
    assert_one_error(result.exit_code, result.output, "shape (1, 6), not a detector's")


def test_overlay_draws_the_box_on_both_panels() -> None:
    figure = overlay(torch.rand(3, 32, 32), torch.rand(1, 32, 32), box=(4, 8, 20, 30))
    for axes in figure.axes[:2]:
        (frame,) = [p for p in axes.patches if isinstance(p, Rectangle)]
        assert frame.get_xy() == (3.5, 7.5)  # pixel edges sit half a pixel before centres
        assert (frame.get_width(), frame.get_height()) == (16, 22)
    with pytest.raises(InvalidParameterError, match="four numbers"):
        overlay(torch.rand(3, 8, 8), torch.rand(1, 8, 8), box=(0, 0, 4))


def test_the_builtin_detector_reads_images_at_its_training_size(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """A 64 x 64 file is brought to the detector's 96 x 96, so a box up to 96 is inside it."""
    args = ["explain", str(files["image"]), "--model", "detector", "--out", str(tmp_path)]
    result = runner.invoke(
        app, [*args, "--box", "0,0,90,90", "--label", "1", "--method", "saliency"]
    )
    assert result.exit_code == 0, result.output
    assert explained_line(result.output).startswith("scene: explained square in box 0.0, 0.0, 90")
    saved = Explanation.load(tmp_path / "scene-detector-saliency.safetensors")
    assert saved.attributions.shape == (1, 1, 96, 96)
    (note,) = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert "of the 96x96 scenes it was trained on" in note
    assert "resized to 96x96 without keeping its aspect ratio" in note
    assert "64x64" not in note


def test_the_builtin_detector_needs_an_object_for_a_users_image(
    files: dict[str, Path], tmp_path: Path
) -> None:
    args = ["explain", str(files["image"]), "--model", "detector", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--method", "saliency"])
    assert_one_error(result.exit_code, result.output, "has no predicted class: choose the object")


def test_the_detectors_builtin_sample_is_a_scene(tmp_path: Path) -> None:
    """No input: scene ``--sample`` at 96 x 96, its top detection explained, objects named."""
    args = ["explain", "--model", "detector", "--sample", "3", "--out", str(tmp_path)]
    result = runner.invoke(app, [*args, "--method", "saliency"])
    assert result.exit_code == 0, result.output
    scene = make_shapes_scenes(1, seed=3)
    names = ", ".join(CLASS_NAMES[int(k)] for k in scene.labels[0])
    assert f"sample3: a scene of {names} (outlined)" in result.output
    assert "sample3: explained " in result.output and " in box " in result.output
    assert "note: " not in result.output  # the sample is the detector's own data
    saved = Explanation.load(tmp_path / "sample3-detector-saliency.safetensors")
    assert saved.attributions.shape == (1, 1, 96, 96)
    assert (tmp_path / "sample3-detector-saliency.png").stat().st_size > 0
