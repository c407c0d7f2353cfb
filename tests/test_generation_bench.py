"""Generation explanations scored by ``evaluate_generation`` and through ``faithmap.evaluate``,
and the ``generation`` suite of ``faithmap bench``: rows in the store, resuming, the report, the
CLI and its refusals."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import faithmap
import faithmap.bench.generation_suite as suite_module
from faithmap.bench import Store
from faithmap.bench.generation_suite import (
    GenerationBenchConfig,
    plan_generation,
    run_generation_bench,
)
from faithmap.bench.suites import SUITES
from faithmap.cli import app
from faithmap.errors import FaithmapError, InvalidParameterError, ShapeError
from faithmap.generation import (
    GENERATION_METRICS,
    GenerationExplanation,
    evaluate_generation,
    explain_generation,
    load_gpt,
)
from faithmap.generation.tasks import MASK_ID, content_features, make_task

runner = CliRunner()


def _copy_explanation() -> tuple[GenerationExplanation, list[list[int]]]:
    """Feature ablation of a copy example (the shipped GPT copies at 1.000 held-out accuracy)."""
    data = make_task("copy", 1, seed=11)
    exp = explain_generation(
        load_gpt(),
        data.prompts[0],
        continuation=data.answers[0],
        features=content_features(data.prompts[0]),
        baseline=MASK_ID,
    )
    return exp, data.dependencies[0]


def test_hit_rate_scores_the_top_feature_against_the_known_dependency() -> None:
    exp, depends = _copy_explanation()
    steps, count = exp.attributions.shape
    labels = exp.features.labels
    # copied symbol t is feature t: an explanation pointing at it hits, one pointing elsewhere
    assert [int(labels[positions[0]]) for positions in depends] == list(range(steps))
    right = replace(exp, attributions=torch.eye(steps, count))
    wrong = replace(exp, attributions=torch.eye(steps, count).roll(1, dims=1))
    table = evaluate_generation(
        load_gpt(), {"right": right, "wrong": wrong}, metrics=["hit_rate"], dependencies=depends
    )
    assert table.groupby("method")["value"].mean().to_dict() == {"right": 1.0, "wrong": 0.0}
    assert table["step"].tolist() == list(range(steps)) * 2
    assert table["token"].tolist() == exp.step_tokens * 2


def test_every_metric_gives_one_row_per_step_and_favours_the_true_dependency() -> None:
    exp, depends = _copy_explanation()
    steps, count = exp.attributions.shape
    right = replace(exp, attributions=torch.eye(steps, count))
    wrong = replace(exp, attributions=-torch.eye(steps, count))  # the dependency ranked last
    table = evaluate_generation(
        load_gpt(),
        {"right": right, "wrong": wrong},
        metrics=GENERATION_METRICS,
        dependencies=depends,
    )
    assert len(table) == 2 * steps * len(GENERATION_METRICS)
    means = table.groupby(["metric", "method"])["value"].mean()
    for metric in ("comprehensiveness", "soft_comprehensiveness", "step_insertion"):
        assert means[metric, "right"] > means[metric, "wrong"], metric
    for metric in ("sufficiency", "step_deletion"):  # lower is better
        assert means[metric, "right"] < means[metric, "wrong"], metric
    higher = table.groupby("metric")["higher_is_better"].first().to_dict()
    assert not higher["sufficiency"] and not higher["step_deletion"] and higher["hit_rate"]


def test_evaluate_scores_generation_explanations_as_evaluate_generation_does() -> None:
    exp, depends = _copy_explanation()
    model, prompt = load_gpt(), exp.continuation.prompt
    metrics = ["comprehensiveness", "hit_rate"]
    expected = evaluate_generation(model, {"ablation": exp}, metrics=metrics, dependencies=depends)
    for given in (prompt.ids, prompt.ids.tolist()):  # the prompt explained, as token ids
        table = faithmap.evaluate(
            model,
            given,  # type: ignore[arg-type]
            {"ablation": exp},
            metrics=metrics,
            dependencies=depends,
        )
        columns = ["step", "token", "method", "metric", "value"]
        assert table[columns].equals(expected[columns])
    # one explanation, labelled by its method; the default metrics are the generation ones
    table = faithmap.evaluate(model, prompt.ids, exp)
    assert set(table["method"]) == {exp.method}
    assert set(table["metric"]) == set(GENERATION_METRICS) - {"hit_rate"}


def test_evaluate_refuses_generation_requests_it_cannot_honour() -> None:
    exp, depends = _copy_explanation()
    model, ids = load_gpt(), exp.continuation.prompt.ids
    other = ids.flip(0)
    with pytest.raises(InvalidParameterError, match="explains the prompt"):
        faithmap.evaluate(model, other, exp, metrics=["comprehensiveness"])
    with pytest.raises(InvalidParameterError, match=r"dependencies=.*instead of masks"):
        faithmap.evaluate(model, ids, exp, masks=torch.ones(1, 1, 4, 4, dtype=torch.bool))
    image = torch.zeros(1, 1, 4, 4)
    with pytest.raises(InvalidParameterError, match="Evaluate each kind in its own call"):
        faithmap.evaluate(model, ids, {"g": exp, "i": image})  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="dependencies"):
        faithmap.evaluate(None, image, image, metrics=["sparseness"], dependencies=depends)
    with pytest.raises(InvalidParameterError, match="'inputs' parameter of evaluate"):
        faithmap.evaluate(None, "a prompt", image, metrics=["sparseness"])


def test_evaluate_generation_refuses_bad_requests() -> None:
    exp, depends = _copy_explanation()
    model = load_gpt()
    with pytest.raises(InvalidParameterError, match="dependencies"):
        evaluate_generation(model, exp, metrics=["hit_rate"])
    with pytest.raises(InvalidParameterError, match="Valid names are"):
        evaluate_generation(model, exp, metrics=["insertion"])
    with pytest.raises(InvalidParameterError, match="not evaluated"):
        evaluate_generation(model, exp, metrics=["sufficiency"], params={"hit_rate": {}})
    with pytest.raises(ShapeError, match="steps"):
        evaluate_generation(model, exp, metrics=["hit_rate"], dependencies=depends[:1])
    with pytest.raises(InvalidParameterError, match="GenerationExplanation"):
        evaluate_generation(model, {"map": torch.zeros(2, 3)})  # type: ignore[dict-item]


def _config(out: Path, **changes: object) -> GenerationBenchConfig:
    options: dict[str, object] = {
        "tasks": ["copy", "kv"],
        "methods": ["feature_ablation", "input_x_gradient"],
        "metrics": ["comprehensiveness", "step_deletion", "hit_rate"],
        "n_samples": 2,
        "chunk_size": 1,
        "out": out,
    }
    options.update(changes)
    return GenerationBenchConfig(**options)  # type: ignore[arg-type]


def test_the_suite_is_registered_and_checks_its_names() -> None:
    suite = SUITES["generation"]
    assert suite.data == "generation" and "reagent" in suite.methods
    assert set(suite.metrics) == set(GENERATION_METRICS)
    with pytest.raises(InvalidParameterError, match="Valid names are"):
        GenerationBenchConfig(methods=["grad_cam"])
    with pytest.raises(InvalidParameterError, match="Valid names are"):
        GenerationBenchConfig(tasks=["sort"])
    with pytest.raises(InvalidParameterError, match="does not score"):
        GenerationBenchConfig(metrics=["hit_rate"], metric_params={"sufficiency": {}})
    with pytest.raises(FaithmapError):
        GenerationBenchConfig(method_params={"lime": {"n_samples": 0}})


class Stopped(Exception):
    """A run killed after its second task."""


def test_bench_rows_store_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path)
    tasks = plan_generation(config)
    assert [t.id for t in tasks[:3]] == [
        "gpt:copy/feature_ablation/0-1",
        "gpt:copy/feature_ablation/1-2",
        "gpt:copy/input_x_gradient/0-1",
    ]
    calls: list[str] = []
    stopped: list[object] = []
    original = suite_module.run_generation_task

    def interrupted(*args: object) -> object:
        task = args[1]
        calls.append(task.id)  # type: ignore[attr-defined]
        if len(calls) == 3 and not stopped:
            stopped.append(task)
            raise Stopped
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(suite_module, "run_generation_task", interrupted)
    with pytest.raises(Stopped):
        run_generation_bench(config, progress=False)
    with Store(tmp_path) as store:
        assert len(store.done(store.run(config.hash))) == 2
    calls.clear()
    rows = run_generation_bench(config, progress=False)
    assert calls == [t.id for t in tasks[2:]]  # only the tasks not stored yet
    assert len(rows) == 2 * 2 * 3 * 2  # tasks x methods x metrics x examples
    assert {r.model for r in rows} == {"gpt:copy", "gpt:kv"}
    hits = [
        r.value
        for r in rows
        if (r.model, r.method, r.metric) == ("gpt:copy", "feature_ablation", "hit_rate")
    ]
    assert hits == [1.0, 1.0]  # ablating the copied symbol is what changes its copy
    assert all(math.isfinite(r.value) for r in rows)
    report = (tmp_path / "report.html").read_text()
    assert "gpt:kv" in report and "hit_rate" in report and "<script" not in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["config"]["tasks"] == ["copy", "kv"] and len(results["rows"]) == len(rows)
    calls.clear()
    assert run_generation_bench(config, progress=False) == rows and calls == []
    with Store(tmp_path) as store:  # another configuration is another run
        run_generation_bench(_config(tmp_path, n_samples=1), progress=False)
        assert len(store.runs()) == 2


def test_cli_bench_suite_generation(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "bench", "--suite", "generation", "--samples", "1",
            "--methods", "feature_ablation,lime", "--metrics", "hit_rate,sufficiency",
            "--param", "lime.n_samples=50", "--out", str(tmp_path), "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "gpt:count" in result.output and (tmp_path / "report.html").is_file()
    with Store(tmp_path) as store:
        run = store.run()
        assert run.config["methods"]["lime"]["n_samples"] == 50
        assert len(store.rows(run)) == 3 * 2 * 2
    for extra in (["--models", "cnn"], ["--param", "lime.n_samples=0"], ["--metrics", "deletion"]):
        bad = runner.invoke(app, ["bench", "--suite", "generation", "--out", str(tmp_path), *extra])
        assert bad.exit_code == 2, bad.output
        assert bad.output.count("error:") == 1
