"""``faithmap bench --suite grid`` at a tiny size: scores, findings, AggAtt, the files, and
resuming an interrupted run from the store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from faithmap.bench.grid_suite import run_grid
from faithmap.bench.store import Store
from faithmap.bench.suites import SUITES
from faithmap.cli import app


def test_grid_suite_scores_states_claims_and_bins(tmp_path: Path) -> None:
    run = run_grid(n_grids=8, methods=("saliency", "grad_cam"), out=tmp_path)
    # saliency at three layers and Grad-CAM at two, in three settings, 32 maps each.
    assert len(run.scores) == 3 * 5 * 32
    difull = [r["score"] for r in run.scores if r["setting"] == "difull" and r["layer"] == "input"]
    assert difull and all(value == 1.0 for value in difull)  # analytic: disconnected cells
    assert any(
        line.startswith("DiFull: backpropagation") and "holds" in line for line in run.findings
    )
    constant = [line for line in run.findings if "spatially constant" in line]
    assert len(constant) == 1 and ": holds" in constant[0]
    # 32 maps fill AggAtt's six percentile bins.
    assert ("dipart", "grad_cam@final") in run.aggatt
    assert run.aggatt[("dipart", "grad_cam@final")].counts.tolist() == [1, 1, 14, 14, 1, 1]


def test_bench_suite_grid_cli_writes_results(tmp_path: Path) -> None:
    assert "grid" in SUITES
    args = ["bench", "--suite", "grid", "--samples", "1", "--methods", "saliency,occlusion"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "grid suite findings" in result.output
    record = json.loads((tmp_path / "grid_summary.json").read_text())
    assert record["maps_per_setting_method_layer"] == 4
    occlusion = [row for row in record["summary"] if row["method"] == "occlusion"]
    assert {row["setting"] for row in occlusion} == {"gridpg", "difull", "dipart"}
    assert (tmp_path / "grid_scores.csv").is_file()
    assert "Findings" in (tmp_path / "grid_report.html").read_text(encoding="utf-8")


def test_bench_suite_grid_refuses_flags_that_do_not_apply(tmp_path: Path) -> None:
    args = ["bench", "--suite", "grid", "--models", "resnet", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--models do not apply to the grid suite" in result.output


def _keyed(scores: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], tuple[float, float]]:
    return {
        (r["setting"], r["method"], r["layer"], r["sample"]): (r["score"], r["passes"])
        for r in scores
    }


def test_an_interrupted_grid_run_resumes_with_every_score_once(tmp_path: Path) -> None:
    methods = ("saliency", "occlusion")  # 5 tasks per setting: at 3 layers and at the input
    whole = run_grid(n_grids=1, methods=methods, out=tmp_path / "whole")
    assert len(whole.scores) == 3 * 4 * 4  # 3 settings x 4 method@layer x 4 cells
    stored: list[str] = []

    def stop_after_five(line: str) -> None:
        stored.append(line)
        if len(stored) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_grid(n_grids=1, methods=methods, out=tmp_path / "cut", log=stop_after_five)
    with Store(tmp_path / "cut") as store:
        assert len(store.done(store.run())) == 5
    resumed: list[str] = []
    run = run_grid(n_grids=1, methods=methods, out=tmp_path / "cut", log=resumed.append)
    assert len(resumed) == 12 - 5  # only the missing tasks ran
    assert len(run.scores) == len(whole.scores)
    assert len(_keyed(run.scores)) == len(run.scores)  # no score twice
    ours, theirs = _keyed(run.scores), _keyed(whole.scores)
    assert ours.keys() == theirs.keys()
    for key, (score, passes) in ours.items():
        assert score == theirs[key][0]
        assert passes == theirs[key][1] or (math.isnan(passes) and math.isnan(theirs[key][1]))
    assert run.findings == whole.findings
    assert run.aggatt.keys() == whole.aggatt.keys()


def test_ctrl_c_in_the_grid_suite_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(**kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("faithmap.bench.grid_suite.run_grid", interrupted)
    result = CliRunner().invoke(app, ["bench", "--suite", "grid", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output
