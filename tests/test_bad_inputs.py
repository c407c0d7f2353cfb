"""Bad input gets a clear FaithmapError (issue 15): explanation files, metric parameters, bench
configuration types and NaN outputs."""

from __future__ import annotations

import pickle
import sqlite3
import struct
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import faithmap
from faithmap.bench import BenchConfig
from faithmap.bench.store import Store
from faithmap.bench.store_file import APPLICATION_ID, SCHEMA_VERSION
from faithmap.cli import app
from faithmap.cli.common import file_stem
from faithmap.cli.image_batches import unique_stems
from faithmap.errors import FileProblemError, InvalidParameterError, ModelError, ShapeError
from faithmap.metrics import insertion


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    explanation = faithmap.explain(net, torch.rand(2, 3, 2, 2), method="saliency")
    return explanation.save(tmp_path / "good.safetensors")


def test_a_saved_explanation_loads(saved: Path) -> None:
    assert faithmap.Explanation.load(saved).method == "saliency"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "No explanation file"),
        ("truncated", "not a readable safetensors file"),
        ("header", "not a readable safetensors file"),
        ("foreign", "not a faithmap explanation"),
        ("metadata", "metadata of .* is not what Explanation.save writes"),
    ],
)
def test_a_damaged_explanation_file_is_a_clear_error(
    saved: Path, tmp_path: Path, damage: str, message: str
) -> None:
    path = tmp_path / f"{damage}.safetensors"
    data = saved.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "header":
        path.write_bytes(b"\xff" * 8 + data[8:])
    elif damage == "foreign":
        save_file({"weights": torch.zeros(3)}, str(path))
    elif damage == "metadata":
        save_file(
            {"attributions": torch.zeros(1, 1, 2, 2)},
            str(path),
            metadata={"method": "saliency", "config": "{not json"},
        )
    with pytest.raises(FileProblemError, match=message):
        faithmap.Explanation.load(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("out", 7, "'out' parameter of BenchConfig must be a folder path"),
        ("models", 5, "A benchmark model must be a built-in name"),
        ("methods", 5, "Unknown method 5"),
        ("metrics", 3.5, "Unknown metric 3.5"),
    ],
)
def test_bench_toml_values_of_the_wrong_type_are_clear_errors(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(f"{key} = {value}\n")
    with pytest.raises(InvalidParameterError, match=message):
        BenchConfig.from_toml(config)


def test_evaluate_names_an_unknown_metric_parameter_and_the_valid_ones() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.rand(2, 3, 2, 2)
    explanation = faithmap.explain(net, x, method="saliency")
    with pytest.raises(InvalidParameterError, match=r"no parameter 'stepz'.*steps"):
        faithmap.evaluate(
            net, x, explanation, metrics=["insertion"], params={"insertion": {"stepz": 5}}
        )


def test_a_model_that_returns_nan_is_refused_naming_the_samples() -> None:
    def nan_for_the_second(x: torch.Tensor) -> torch.Tensor:
        scores = x.flatten(1)[:, :2].clone()
        scores[x.flatten(1)[:, 0] > 0.5] = float("nan")
        return scores

    x = torch.tensor([[[[0.1, 0.2]]], [[[0.9, 0.2]]]])
    with pytest.raises(ModelError, match=r"NaN or infinite attributions for sample\(s\) 1:"):
        faithmap.explain(nan_for_the_second, x, method="occlusion", target=0, window=1)


def test_a_nan_map_gets_no_score() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    x = torch.rand(3, 3, 2, 2)
    maps = torch.rand(3, 1, 2, 2)
    maps[2, 0, 1, 1] = float("nan")
    with pytest.raises(ShapeError, match=r"NaN or infinity for sample\(s\) 2;"):
        insertion(net, x, maps)


runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "1.5"], "--target must be a class index, a whole number >= 0. Got '1.5'"),
        (["--size", "0"], "at least 1x1 pixels. Got 0x0"),
        (["--size", "-5"], "at least 1x1 pixels. Got -5x-5"),
        (["--architecture", "torch.nn:Linear"], "carries its own architecture"),
    ],
)
def test_cli_bad_options_are_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["explain", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and message in result.output, result.output


def test_out_that_is_a_file_or_read_only_is_one_error_line(tmp_path: Path) -> None:
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    for command in (["explain"], ["bench", "--models", "cnn", "--methods", "saliency"]):
        result = runner.invoke(app, [*command, "--out", str(existing)])
        assert result.exit_code == 2 and "is an existing file, not a folder" in result.output
    inside_a_file = existing / "out"  # mkdir fails as it would in a read-only folder
    result = runner.invoke(app, ["explain", "--out", str(inside_a_file)])
    assert result.exit_code == 2 and "Could not create the --out folder" in result.output


def test_outputs_stay_inside_out_and_never_overwrite_each_other(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    image = (torch.rand(16, 16, 3).numpy() * 255).astype("uint8")
    from PIL import Image

    for name in ("dup.png", "dup.jpg", "odd\x1b[31mname.png"):
        Image.fromarray(image).save(photos / name)
    out = tmp_path / "out"
    result = runner.invoke(app, ["explain", str(photos), "--method", "saliency", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert "dup-png-cnn-saliency.png" in written and "dup-jpg-cnn-saliency.png" in written
    assert "\x1b" not in result.output  # the escape code is neither printed nor in a name
    assert "odd_31mname: predicted" in result.output and "odd_31mname-cnn-saliency.png" in written
    assert all(p.resolve().parent == out.resolve() for p in out.iterdir())
    assert unique_stems([Path("a/x/../../../etc/net")]) == ["net"]
    assert file_stem("x/../../m/net") == "x_.._.._m_net"


@pytest.mark.parametrize("kind", ["text", "corrupt", "foreign", "newer"])
def test_a_store_that_is_not_faithmaps_is_refused_untouched(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bench.sqlite"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "corrupt":
        path.write_bytes(b"SQLite format 3\x00" + b"\x07" * 200)
    else:
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE customers (id INTEGER)")
        if kind == "newer":
            connection.execute("DROP TABLE customers")
            connection.execute(f"PRAGMA application_id={APPLICATION_ID}")
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        connection.commit()
        connection.close()
    before = path.read_bytes()
    message = {
        "text": "not an SQLite database",
        "corrupt": "is corrupt",
        "foreign": "another program's SQLite database",
        "newer": "written by a newer faithmap",
    }[kind]
    with pytest.raises(FileProblemError, match=message):
        Store(tmp_path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output


def test_a_new_store_is_marked_as_faithmaps(tmp_path: Path) -> None:
    with Store(tmp_path):
        pass
    connection = sqlite3.connect(tmp_path / "bench.sqlite")
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    connection.close()
    with Store(tmp_path):  # and opens again
        pass


def _png_header_claiming(side: int) -> bytes:
    """A PNG whose header claims ``side x side`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def test_a_decompression_bomb_in_a_folder_is_skipped(tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "bomb.png").write_bytes(_png_header_claiming(30000))
    Image.fromarray((torch.rand(16, 16, 3).numpy() * 255).astype("uint8")).save(photos / "ok.png")
    result = runner.invoke(
        app, ["explain", str(photos), "--method", "saliency", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "decompression bomb" in result.output
    assert "ok: predicted" in result.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.safetensors", b"garbage123456789", "as a safetensors file"),
        ("bad.pt", b"garbage", "it is no valid pickle"),
        ("evil.pt", pickle.dumps(print), "holding Python objects (builtins.print"),
    ],
)
def test_a_damaged_or_unsafe_model_file_is_one_error_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = runner.invoke(app, ["explain", "--model", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output.startswith("error: ")
    assert message in result.output, result.output


def test_an_interrupted_bench_says_what_was_saved_and_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faithmap.cli.bench as bench_command
    from faithmap.bench import run_bench

    def interrupted_at_the_end(config: BenchConfig, **kwargs: object) -> object:
        run_bench(config, progress=False, report=False)  # every task of the run is stored
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_command, "run_bench", interrupted_at_the_end)
    args = ["bench", "--models", "cnn", "--methods", "saliency", "--samples", "2"]
    args += ["--chunk-size", "1", "--out", str(tmp_path), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130
    assert "interrupted: 2 of 2 tasks are stored in" in result.output
    assert "run the same command again to resume" in result.output


def test_a_bad_metric_value_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    args = ["bench", "--models", "cnn", "--methods", "saliency", "-m", "insertion.steps=0"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "'steps' parameter of insertion" in result.output
    assert not (tmp_path / "out" / "bench.sqlite").exists()


def test_a_large_image_is_reduced_before_it_becomes_floats(tmp_path: Path) -> None:
    from PIL import Image

    from faithmap.data import read_image

    pixels = (torch.rand(1024, 768, 3).numpy() * 255).astype("uint8")
    Image.fromarray(pixels).save(tmp_path / "large.png")
    small = read_image(tmp_path / "large.png", 64)
    assert small.shape == (1, 3, 64, 64) and small.dtype == torch.float32
    # a box average of noise: close to the mean grey, as the full-size path would give
    assert abs(float(small.mean()) - float(pixels.mean()) / 255) < 0.01


def test_a_folder_is_explained_in_chunks_with_the_same_result(tmp_path: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        pixels = (torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(i)) * 255).byte()
        Image.fromarray(pixels.numpy()).save(photos / f"p{i}.png")
    (photos / "broken.png").write_bytes(b"not an image")
    runs = {}
    for chunk in ("2", "64"):
        out = tmp_path / f"out{chunk}"
        args = ["explain", str(photos), "--method", "saliency", "--chunk-size", chunk]
        result = runner.invoke(app, [*args, "--batch-size", "4", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert result.output.count(": predicted ") == 5 and "skipped" in result.output
        runs[chunk] = faithmap.Explanation.load(out / "images-cnn-saliency.safetensors")
    assert runs["2"].attributions.shape == (5, 1, 64, 64)
    torch.testing.assert_close(runs["2"].attributions, runs["64"].attributions)
    assert runs["2"].cost.forward == runs["64"].cost.forward
