"""``faithmap bench`` from a TOML file with flags on top, resumed; ``faithmap report``."""

from __future__ import annotations

import csv
import re
import sqlite3
import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

import faithmap
from faithmap.bench import Store
from faithmap.bench.store_file import SCHEMA_VERSION
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


def test_help_shows_the_defaults_and_what_passes_s_is() -> None:
    result = runner.invoke(app, ["bench", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's panels, unwrapped
    assert "Images per (model, method); default: 8." in text
    assert "default: faithmap-bench/ (the current directory's)" in text
    assert "passes_s, the model's forward plus backward passes per second" in text
    assert "[default: default]" in text  # --suite


def test_default_bench_console_intervals_report_path_and_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    args = ["bench", "--models", "cnn", "--methods", "saliency", "--samples", "3"]
    args += ["--batch-size", "16", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["/usr/bin/faithmap", *args])
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    # the default suite: insertion, deletion and the localisation metrics (built-in masks)
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    metrics = ["insertion", "deletion", "pointing_game", "energy_pointing_game"]
    metrics += ["relevance_mass_accuracy"]
    assert list(dict.fromkeys(r["metric"] for r in rows)) == metrics
    # the console's spread is the report's: the half-width of the 95 % t-interval
    assert "mean ± half-width of the 95% interval (Student t)" in result.output
    values = [float(r["value"]) for r in rows if r["metric"] == "deletion"]
    half = stats.t.ppf(0.975, 2) * stats.sem(values)
    assert f"{statistics.fmean(values):.3f} ± {half:.3f}" in result.output
    assert "1 task(s) (a task: one model, one method, up to 8 images" in result.output
    assert "passes_s in the bar: model passes (forward + backward) per second" in result.output
    page = (out / "report.html").resolve()
    assert f"report: {page} (open it in a browser)" in result.output.replace("\n", "")
    with Store(out) as store:
        (run,) = store.runs()
    assert run.command == f"faithmap {' '.join(args)}"
    assert "by <code>faithmap bench --models cnn" in page.read_text()


def test_a_version_1_store_is_migrated_and_reported(tmp_path: Path) -> None:
    args = ["bench", "--models", "cnn", "--methods", "saliency", "--samples", "1"]
    args += ["--metrics", "deletion", "--out", str(tmp_path), "--no-progress", "--no-report"]
    assert runner.invoke(app, args).exit_code == 0
    with sqlite3.connect(tmp_path / "bench.sqlite") as connection:  # as faithmap 0.1 wrote it
        connection.execute("ALTER TABLE runs DROP COLUMN command")
        connection.execute("PRAGMA user_version=1")
    result = runner.invoke(app, ["report", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").is_file()
    with sqlite3.connect(tmp_path / "bench.sqlite") as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    with Store(tmp_path) as store:
        (run,) = store.runs()
        assert run.command == "" and len(store.rows(run)) == 1
