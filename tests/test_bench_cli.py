"""``faithmap bench`` from a TOML file with flags on top, resumed; ``faithmap report``."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

import faithmap
from faithmap.bench import Store
from faithmap.cli import app

runner = CliRunner()

TOML = """
models = ["cnn"]
methods = ["saliency", "rise"]
metrics = ["insertion", "deletion"]
n_samples = 2
batch_size = 16

[method_params.rise]
n_masks = 16

[metric_params.insertion]
steps = 4
"""


def test_bench_from_toml_resumes_and_report_rewrites_the_page(tmp_path: Path) -> None:
    path, out = tmp_path / "bench.toml", tmp_path / "out"
    path.write_text(TOML)
    args = ["bench", "--config", str(path), "-p", "rise.n_masks=8", "-m", "deletion.steps=2"]
    args += ["--samples", "3", "--chunk-size", "2", "--out", str(out), "--no-progress"]
    first = runner.invoke(app, args, terminal_width=200)
    assert first.exit_code == 0, first.output
    assert "saliency" in first.output and "insertion ↑" in first.output
    assert "deletion ↓" in first.output and "report.html" in first.output
    with Store(out) as store:
        (run,) = store.runs()
        assert len(store.done(run)) == 1 * 2 * 2  # model × method × chunks of (2, 1) samples
        assert run.config["n_samples"] == 3
        assert run.config["methods"]["rise"]["n_masks"] == 8  # the flag over the file
        assert run.config["metrics"] == {
            "insertion": {"steps": 4, "seed": 0},
            "deletion": {"steps": 2, "seed": 0},
        }
    exported = (out / "results.csv").read_text()
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * 2
    rise = [r for r in rows if r["method"] == "rise"]
    assert all(float(r["explain_forward"]) == 9.0 for r in rise)  # target + 8 masks
    insertion = [r for r in rows if r["metric"] == "insertion"]
    assert all(float(r["metric_forward"]) == 5.0 for r in insertion)  # steps + 1

    page = out / "report.html"
    page.unlink()
    again = runner.invoke(app, args, terminal_width=200)  # everything stored: no new task
    assert again.exit_code == 0, again.output
    assert (out / "results.csv").read_text() == exported  # read back from the store
    with Store(out) as store:
        assert len(store.runs()) == 1
    page.unlink()
    rewritten = runner.invoke(app, ["report", str(out)])
    assert rewritten.exit_code == 0, rewritten.output
    assert page.is_file() and "<html" in page.read_text().lower()


def test_unknown_names_in_a_toml_fail_before_any_work(tmp_path: Path) -> None:
    path, out = tmp_path / "bench.toml", tmp_path / "out"
    path.write_text('methods = ["saliency", "grad-cam"]\n')
    result = runner.invoke(app, ["bench", "--config", str(path), "--out", str(out)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: Unknown method 'grad-cam'")
    assert all(name in line for name in faithmap.METHODS.names())
    assert not out.exists()  # no store, no model loaded


def test_report_of_a_missing_store_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith("error: No benchmark store at")
