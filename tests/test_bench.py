"""The benchmark's configuration (Python and TOML), its hash, plan and summary.

Runs are tested in test_bench_store.py, test_bench_resume.py, test_bench_ray.py and test_cli.py.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import pytest

import faithmap
from faithmap.bench import DEFAULT_METHOD_PARAMS, DEFAULT_METHODS, BenchConfig, Row, plan, summarize
from faithmap.bench.config import merge_params
from faithmap.bench.defaults import FULL_METHODS
from faithmap.bench.report.palette import METHOD_FAMILIES
from faithmap.bench.suites import SUITES
from faithmap.metrics import DEFAULT_METRICS
from faithmap.zoo import BUILTIN_MODELS


def test_defaults_cover_every_model_and_method_with_light_rise() -> None:
    config = BenchConfig()
    assert config.models == BUILTIN_MODELS
    assert config.methods == DEFAULT_METHODS
    assert config.n_samples == SUITES["default"].n_samples == 8  # the CLI's default too
    # an explicit list of registered methods covering every family of image classifier methods
    assert set(DEFAULT_METHODS) <= set(faithmap.METHODS.names())
    covered = {METHOD_FAMILIES[name] for name in DEFAULT_METHODS}
    assert covered == {"gradient", "CAM", "LRP", "perturbation", "subset selection"}
    assert not {"d_rise", "vps"} & set(DEFAULT_METHODS)  # detection: the detection suite
    assert config.metrics == DEFAULT_METRICS
    assert config.params("rise") == {
        "n_masks": 250,
        "seed": 0,
    }  # benchmarks/default_bench_convergence.py
    assert config.record()["method_params"]["rise"] == {"n_masks": 250}
    assert config.metric_kwargs("insertion") == {"seed": 0}


def test_the_full_suite_runs_every_family_method_with_the_earlier_parameters() -> None:
    suite = SUITES["full"]
    config = BenchConfig(**suite.bench_options())
    assert config.methods == FULL_METHODS and len(FULL_METHODS) == 27
    assert set(DEFAULT_METHODS) < set(FULL_METHODS)
    assert {METHOD_FAMILIES[name] for name in FULL_METHODS} == {
        METHOD_FAMILIES[name] for name in DEFAULT_METHODS
    }
    assert config.params("rise") == {"n_masks": 1000, "seed": 0}
    assert config.params("lima") == {"regions": "slic:25", "seed": 0}
    assert config.params("smdl") == {"regions": "slic:25", "seed": 0}
    assert config.models == BUILTIN_MODELS and config.n_samples == 16


def test_plan_is_every_model_method_and_chunk_with_stable_ids() -> None:
    config = BenchConfig(
        methods=["rise", "saliency"], seed=7, method_params={}, n_samples=5, chunk_size=2
    )
    tasks = plan(config)
    chunks = [(0, 2), (2, 4), (4, 5)]
    assert [(t.model, t.method, t.start, t.stop) for t in tasks] == [
        (m, method, *chunk)
        for m in BUILTIN_MODELS
        for method in ("rise", "saliency")
        for chunk in chunks
    ]
    assert tasks[0].id == "cnn/rise/0-2" and tasks[-1].id == f"{BUILTIN_MODELS[-1]}/saliency/4-5"
    assert len({t.id for t in tasks}) == len(tasks)
    assert tasks[0].params == {"seed": 7}  # rise's own n_masks, the bench's seed
    assert tasks[3].params == {}
    assert [t.id for t in plan(config)] == [t.id for t in tasks]


def test_config_is_frozen_and_normalised() -> None:
    config = BenchConfig(models=["cnn", "cnn"], methods="saliency")
    assert config.models == ("cnn",) and config.methods == ("saliency",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_samples = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"models": ["vgg"]},
            "Unknown model 'vgg'.*no such file. Valid names are: cnn.*model file",
        ),
        ({"methods": []}, "No method"),
        ({"methods": ["saliency", "gradcam++"]}, "Unknown method 'gradcam\\+\\+'.*rise"),
        ({"metrics": ["auc"]}, "Unknown metric 'auc'.*Valid names are: .*insertion"),
        ({"data": "imagenet"}, "Unknown data 'imagenet'.*no such folder. Valid names are: shapes"),
        ({"executor": "dask"}, "Unknown executor 'dask'.*Valid names are: local, ray"),
        ({"n_samples": 0}, "'n_samples' parameter of BenchConfig must be an int >= 1"),
        ({"chunk_size": 0}, "'chunk_size' parameter of BenchConfig must be an int >= 1"),
        ({"workers": 0}, "'workers' parameter of BenchConfig must be an int >= 1"),
        ({"method_params": {"banzhaf": {}}}, "unknown methods 'banzhaf'"),
        ({"method_params": {"rise": {"n_masks": 0}}}, "'n_masks' parameter of Rise"),
        ({"method_params": {"saliency": {"steps": 3}}}, "unexpected parameter"),
        ({"metric_params": {"accuracy": {}}}, "unknown metrics 'accuracy'"),
        ({"metric_params": {"insertion": {"stps": 3}}}, "unexpected parameters 'stps'.*steps"),
    ],
)
def test_bad_configuration_fails_before_any_work(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(faithmap.InvalidParameterError, match=message):
        BenchConfig(**kwargs)  # type: ignore[arg-type]


def _config(**changes: object) -> BenchConfig:
    base: dict[str, object] = {"models": ["cnn"], "methods": ["saliency", "rise"], "n_samples": 4}
    return BenchConfig(**(base | changes))  # type: ignore[arg-type]


def test_hash_names_what_decides_the_numbers_and_nothing_else(tmp_path: Path) -> None:
    reference = _config()
    assert len(reference.hash) == 16 and int(reference.hash, 16) >= 0
    same = [
        _config(methods=["saliency", "rise"], method_params={"rise": {"n_masks": 250}}),
        _config(out=tmp_path, batch_size=8, executor="ray", workers=2, address="auto"),
    ]
    assert all(c.hash == reference.hash for c in same)
    different = [
        _config(n_samples=5),
        _config(seed=1),
        _config(data_seed=1),
        _config(chunk_size=2),
        _config(models=["resnet"]),
        _config(methods=["saliency"]),
        _config(method_params={"rise": {"n_masks": 999}}),
        _config(metrics=["insertion"]),
        _config(metric_params={"insertion": {"steps": 10}}),
    ]
    hashes = [c.hash for c in different]
    assert reference.hash not in hashes and len(set(hashes)) == len(hashes)


def test_python_params_replace_the_defaults_and_merge_params_merges_as_toml_does(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bench.toml"
    path.write_text('methods = ["rise", "lima"]\n[method_params.rise]\nn_masks = 64\n')
    from_file = BenchConfig.from_toml(path)
    given = {"rise": {"n_masks": 64}}
    replaced = BenchConfig(methods=["rise", "lima"], method_params=given)
    merged = BenchConfig(
        methods=["rise", "lima"], method_params=merge_params(DEFAULT_METHOD_PARAMS, given)
    )
    assert from_file.params("lima") == merged.params("lima") == {"regions": "slic:16", "seed": 0}
    assert replaced.params("lima") == {"seed": 0}  # LiMA's own 49 regions
    assert from_file.hash == merged.hash != replaced.hash


def test_toml_is_merged_over_defaults_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(
        'models = ["cnn"]\nmethods = ["rise", "lime"]\nmetrics = ["deletion"]\nn_samples = 6\n'
        'chunk_size = 3\nexecutor = "ray"\nworkers = 2\n'
        "[method_params.rise]\nn_masks = 64\n[metric_params.deletion]\nsteps = 7\n"
    )
    config = BenchConfig.from_toml(path, n_samples=4, seed=None)
    assert (config.models, config.methods, config.metrics) == (
        ("cnn",),
        ("rise", "lime"),
        ("deletion",),
    )
    assert (config.n_samples, config.chunk_size, config.executor, config.workers) == (
        4,
        3,
        "ray",
        2,
    )
    assert config.params("rise") == {"n_masks": 64, "seed": 0}
    assert config.params("lime") == {**DEFAULT_METHOD_PARAMS["lime"], "seed": 0}
    assert config.metric_kwargs("deletion") == {"steps": 7, "seed": 0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modles = ['cnn']\n", "Unknown key 'modles'.*Valid keys are: models, methods"),
        ("models = [\n", "not valid TOML"),
        ("method_params = 3\n", "must be tables like \\[method_params.<name>\\]"),
        ("methods = ['nope']\n", "Unknown method 'nope'"),
    ],
)
def test_bad_toml_fails_with_the_valid_keys(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(faithmap.InvalidParameterError, match=message):
        BenchConfig.from_toml(path)


def _row(method: str, metric: str, sample: int, value: float) -> Row:
    return Row(
        model="cnn",
        method=method,
        metric=metric,
        sample=sample,
        value=value,
        target=0,
        explain_forward=10.0 if method == "a" else 2.0,
        explain_backward=1.0,
        explain_seconds=0.5,
        metric_forward=29.0,
        metric_backward=0.0,
        metric_seconds=0.25,
        params="{}",
    )


def test_summary_is_mean_and_std_per_model_method_and_metric() -> None:
    values = {("a", "insertion"): [0.2, 0.4, 0.9], ("a", "deletion"): [0.1, 0.1, 0.4]}
    values[("b", "insertion")] = [0.5, float("nan"), 0.5]
    rows = [
        _row(method, metric, i, v)
        for (method, metric), vs in values.items()
        for i, v in enumerate(vs)
    ]
    first, second = summarize(rows)
    assert (first.method, second.method) == ("a", "b")
    mean, std = first.metrics["insertion"]
    assert mean == pytest.approx(0.5) and std == pytest.approx(statistics.pstdev([0.2, 0.4, 0.9]))
    assert first.metrics["deletion"][0] == pytest.approx(0.2)
    assert second.metrics == {"insertion": (0.5, 0.0)}  # the undefined sample left out
    assert (first.passes_per_image, second.passes_per_image) == (11.0, 3.0)
    assert first.seconds_per_image == 0.5 and first.metric_seconds_per_image == 0.25
