"""``faithmap bench --suite detection`` (issue 16): the built-in detector on scenes, each scene's
first object explained with a box target by VPS, D-RISE, Grad-CAM, occlusion and RISE, scored by
insertion and deletion of the box score and the energy pointing game in the box; a second run
resumes and adds nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas
import pytest
import torch
from typer.testing import CliRunner

import faithmap
from faithmap.bench.sources import data_source
from faithmap.bench.suites import DETECTION, SUITES
from faithmap.cli import app
from faithmap.core.detection import box_targets
from faithmap.data import make_shapes_scenes
from faithmap.metrics import box_energy_pointing_game, insertion
from faithmap.zoo import load_builtin

runner = CliRunner()
TINY = [
    "bench",
    "--suite",
    "detection",
    "--samples",
    "2",
    "-p",
    "vps.regions=patches:32",  # 3 x 3 regions of 32 pixels
    "-p",
    "d_rise.n_masks=16",
    "-p",
    "rise.n_masks=16",
    "--metric-param",
    "insertion.steps=8",
    "--metric-param",
    "deletion.steps=8",
    "--no-report",
    "--no-progress",
]


def stored_results(out: Path) -> int:
    with sqlite3.connect(out / "bench.sqlite") as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM results").fetchone()
    return int(count)


def test_the_scenes_data_carries_each_images_first_object() -> None:
    data = data_source("scenes").load(3, 5)
    scenes = make_shapes_scenes(3, seed=5)
    assert data.boxes is not None and data.labels is not None and data.masks is not None
    for i in range(3):
        assert data.boxes[i].tolist() == scenes.boxes[i][0].tolist()
        assert int(data.labels[i]) == int(scenes.labels[i][0])
        assert bool((data.masks[i, 0] == scenes.masks[i][0]).all())
    assert data_source("scenes").identity() != data_source("shapes").identity()


def test_the_detection_suite_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    assert SUITES["detection"] is DETECTION
    out = tmp_path / "bench"
    first = runner.invoke(app, [*TINY, "--out", str(out)])
    assert first.exit_code == 0, first.output
    rows = pandas.read_csv(out / "results.csv")
    assert len(rows) == 2 * 5 * 3  # samples x methods x metrics
    assert set(rows["model"]) == {"detector"}
    assert list(dict.fromkeys(rows["method"])) == list(DETECTION.methods)
    assert set(rows["metric"]) == {"insertion", "deletion", "box_energy_pointing_game"}
    assert rows["value"].between(0.0, 1.0).all()
    assert "skipped" not in first.output

    # The rows are those of the first object's BoxTarget, computed here through the API.
    scenes = make_shapes_scenes(2, seed=0)
    targets = box_targets(
        torch.stack([b[0] for b in scenes.boxes]), [int(k[0]) for k in scenes.labels]
    )
    detector = faithmap.Model(load_builtin("detector"))
    cam = faithmap.explain(detector, scenes.images, method="grad_cam", target=targets)
    expected = {
        "box_energy_pointing_game": box_energy_pointing_game(cam).values.tolist(),
        "insertion": insertion(
            detector, scenes.images, cam, activation="logits", steps=8, seed=0
        ).values.tolist(),
    }
    grad_cam = rows[rows["method"] == "grad_cam"].set_index(["metric", "sample"])["value"]
    for metric, values in expected.items():
        assert [grad_cam[(metric, i)] for i in range(2)] == pytest.approx(values, abs=1e-6)

    stored = stored_results(out)
    again = runner.invoke(app, [*TINY, "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert stored_results(out) == stored == 2 * 5 * 3
    assert pandas.read_csv(out / "results.csv").equals(rows)
