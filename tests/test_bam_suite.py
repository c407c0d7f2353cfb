"""``faithmap bench --suite bam``: hand-computed scores, findings from rows, an end-to-end run at a
tiny size, resuming an interrupted run, and the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from faithmap.bench.bam_findings import BAM_METRICS, bam_findings, summarize
from faithmap.bench.bam_suite import BamConfig, plan_bam, run_bam
from faithmap.bench.store import Store
from faithmap.bench.suites import SUITES
from faithmap.bench.work import Row
from faithmap.cli import app
from faithmap.errors import InvalidParameterError
from faithmap.metrics.bam import (
    input_dependence_rate,
    input_independence_rate,
    model_contrast_score,
)

TINY = {"n_images": 6, "methods": ("saliency", "grad_cam"), "patch_steps": 5}


def _mask() -> torch.Tensor:
    """The top-left 2 x 2 block of a 4 x 4 image, for three samples."""
    masks = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    masks[..., :2, :2] = True
    return masks


def _maps(*rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[:, None]


# Every map has min 0 and at least two pixels at its maximum 1, so p99 = 1 and the scaled map is
# the map itself: the statistic is the plain mean over the four mask pixels.
ON_MASK: list[list[float]] = [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]  # statistic 1
HALF: list[list[float]] = [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]  # statistic 2/4
QUARTER: list[list[float]] = [
    [0.5, 0.5, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 0],
    [1, 1, 1, 1],
]  # statistic 1/4
NEGATIVE: list[list[float]] = [
    [1, 1, -3, -3],
    [1, 1, -3, -3],
    [-3, -3, -3, -3],
    [-3, -3, -3, 1],
]  # positive: 1
NEAR: list[list[float]] = [
    [1, 1, 0, 0],
    [1, 0.8, 0, 0],
    [0, 0, 0, 0],
    [0, 0, 0, 1],
]  # statistic 0.95


def test_mcs_idr_iir_by_hand_on_tiny_maps() -> None:
    masks = _mask()
    valid = torch.tensor([True, True, False])
    mcs = model_contrast_score(
        _maps(ON_MASK, HALF, ON_MASK), _maps(QUARTER, NEGATIVE, HALF), masks, valid=valid
    )
    # 1 - 1/4, 1/2 - 1 (negative values do not count), third sample not scored
    assert mcs.values[:2].tolist() == [0.75, -0.5] and math.isnan(float(mcs.values[2]))
    assert mcs.mean == pytest.approx((0.75 - 0.5) / 2)
    # without the object 1, 1/2, 1/4; with it 1/4, 1/2, 1: lower only for the first
    idr = input_dependence_rate(_maps(ON_MASK, HALF, QUARTER), _maps(QUARTER, HALF, ON_MASK), masks)
    assert idr.values.tolist() == [1.0, 0.0, 0.0]
    # |0.95 - 1| < 0.1; |1/2 - 1| >= 0.1; |1 - 1/4| >= 0.1 * 1/4
    iir = input_independence_rate(
        _maps(ON_MASK, ON_MASK, QUARTER), _maps(NEAR, HALF, ON_MASK), masks
    )
    assert iir.values.tolist() == [1.0, 0.0, 0.0]


def _row(method: str, metric: str, value: float, sample: int) -> Row:
    return Row(model="bam", method=method, metric=metric, sample=sample, value=value, target=-1,
               explain_forward=0.0, explain_backward=0.0, explain_seconds=0.0, metric_forward=0.0,
               metric_backward=0.0, metric_seconds=0.0, params="{}")  # fmt: skip


def _rows(table: dict[str, tuple[list[float], list[float], list[float]]]) -> list[Row]:
    return [
        _row(method, metric, value, i)
        for method, columns in table.items()
        for metric, values in zip(BAM_METRICS, columns, strict=True)
        for i, value in enumerate(values)
    ]


def test_summary_and_findings_from_hand_made_rows() -> None:
    nan = math.nan
    rows = _rows(
        {
            "grad_cam": ([0.5, 0.3, nan], [1.0, 1.0, 0.0], [0.0, 1.0, nan]),
            "guided_backprop": ([0.1, -0.3, nan], [1.0, 0.0, 0.0], [1.0, 1.0, nan]),
            "integrated_gradients": ([0.2, 0.0, nan], [0.0, 0.0, 1.0], [1.0, 0.0, nan]),
        }
    )
    summary = summarize(rows)
    assert summary.scores["grad_cam"]["model_contrast_score"] == pytest.approx(0.4)
    assert summary.scores["guided_backprop"]["model_contrast_score"] == pytest.approx(-0.1)
    assert summary.scores["grad_cam"]["input_dependence_rate"] == pytest.approx(2 / 3)
    assert summary.scores["integrated_gradients"]["input_independence_rate"] == 0.5
    assert summary.scored == {
        "model_contrast_score": 2,
        "input_dependence_rate": 3,
        "input_independence_rate": 2,
    }
    found = summary.findings
    assert found[0].startswith("The object model attributes more") and "does not hold" in found[0]
    assert "passes IDR" in found[1] and "does not hold" in found[1]
    assert "passing: grad_cam;" in found[1]
    assert "passes IIR" in found[2] and "passing: guided_backprop;" in found[2]
    # Grad-CAM IDR 2/3 > 0.5; guided backprop 1/3 and IG 1/3 fail it.
    assert found[3].startswith("Grad-CAM passes IDR while") and ": holds" in found[3]
    assert found[4] == "Grad-CAM has the highest MCS: holds (highest: grad_cam +0.400)."


def test_findings_leave_out_claims_about_missing_methods() -> None:
    scores = {"saliency": dict.fromkeys(BAM_METRICS, 0.75)}
    found = bam_findings(scores)
    assert len(found) == 3 and all(": holds" in line for line in found)
    assert bam_findings({}) == []


def _keyed(rows: list[Row]) -> dict[tuple[str, str, int], float]:
    return {(row.method, row.metric, row.sample): row.value for row in rows}


def test_the_suite_runs_end_to_end_and_resumes_with_every_result_once(tmp_path: Path) -> None:
    whole = run_bam(BamConfig(**TINY, out=tmp_path / "whole"))  # type: ignore[arg-type]
    tasks = plan_bam(BamConfig(**TINY))  # type: ignore[arg-type]
    assert [task.method for task in tasks] == ["setup", "saliency", "grad_cam"]
    assert len(whole) == 6 * 5 + 2 * 6 * 3  # 5 setup checks, 3 metrics per method and image
    summary = summarize(whole)
    assert set(summary.scores) == {"saliency", "grad_cam"}
    assert summary.checks["scene_correct"] == 1.0  # the shipped scene model on its own data
    assert len(summary.findings) == 4  # MCS, IDR, IIR, and Grad-CAM's MCS rank

    stored: list[str] = []

    def stop_after_two(line: str) -> None:
        stored.append(line)
        if len(stored) == 2:
            raise KeyboardInterrupt

    config = BamConfig(**TINY, out=tmp_path / "cut")  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        run_bam(config, log=stop_after_two)
    with Store(config.out) as store:
        assert len(store.done(store.run())) == 2
    resumed: list[str] = []
    rows = run_bam(config, log=resumed.append)
    assert len(resumed) == 1  # only grad_cam ran
    assert len(rows) == len(whole) and len(_keyed(rows)) == len(rows)  # none twice
    ours, theirs = _keyed(rows), _keyed(whole)
    assert ours.keys() == theirs.keys()
    assert all(v == theirs[k] or (math.isnan(v) and math.isnan(theirs[k])) for k, v in ours.items())


def test_config_refuses_unknown_methods_and_bad_counts() -> None:
    with pytest.raises(InvalidParameterError, match="among saliency"):
        BamConfig(methods=("rise",))
    with pytest.raises(InvalidParameterError, match="n_images"):
        BamConfig(n_images=0)


def test_bench_suite_bam_cli_writes_results(tmp_path: Path) -> None:
    assert SUITES["bam"].data == "bam"
    args = ["bench", "--suite", "bam", "--samples", "4", "--methods", "grad_cam"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "bam suite findings" in result.output
    record = json.loads((tmp_path / "bam_summary.json").read_text())
    assert set(record["scores"]) == {"grad_cam"}
    assert record["config"]["n_images"] == 4
    assert "Findings" in (tmp_path / "bam_report.html").read_text(encoding="utf-8")
    refused = CliRunner().invoke(app, ["bench", "--suite", "bam", "--models", "cnn"])
    assert refused.exit_code == 2
    assert "--models do not apply to the bam suite" in refused.output
