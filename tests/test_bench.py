"""The benchmark's configuration, plan and summary (the run itself is tested in test_cli)."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

import faithmap
from faithmap.bench import BenchConfig, Row, plan, summarize
from faithmap.zoo import BUILTIN_MODELS


def test_defaults_cover_every_model_and_method_with_light_rise() -> None:
    config = BenchConfig()
    assert config.models == BUILTIN_MODELS
    assert list(config.methods) == faithmap.available()
    assert config.metrics == ("insertion", "deletion")
    assert config.params("rise") == {"n_masks": 1000, "seed": 0}
    assert config.record()["method_params"]["rise"] == {"n_masks": 1000}


def test_plan_is_every_model_times_every_method() -> None:
    config = BenchConfig(methods=["rise", "saliency"], seed=7, method_params={})
    tasks = plan(config)
    assert [(t.model, t.method) for t in tasks] == [
        (m, method) for m in BUILTIN_MODELS for method in ("rise", "saliency")
    ]
    assert dict(tasks[0].params) == {"seed": 7}  # rise's own n_masks, the bench's seed
    assert dict(tasks[1].params) == {}


def test_config_is_frozen_and_normalised() -> None:
    config = BenchConfig(models=["cnn", "cnn"], methods="saliency")
    assert config.models == ("cnn",) and config.methods == ("saliency",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_samples = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": ["vgg"]}, "Unknown model 'vgg'.*Valid names are: cnn, resnet"),
        ({"methods": []}, "No method"),
        ({"metrics": ["auc"]}, "Unknown metric 'auc'"),
        ({"n_samples": 0}, "'n_samples' parameter of BenchConfig must be an int >= 1"),
        ({"method_params": {"shapley_sampling": {}}}, "unknown methods 'shapley_sampling'"),
        ({"method_params": {"rise": {"n_masks": 0}}}, "'n_masks' parameter of Rise"),
        ({"method_params": {"saliency": {"steps": 3}}}, "unexpected parameter"),
    ],
)
def test_bad_configuration_fails_before_any_work(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(faithmap.InvalidParameterError, match=message):
        BenchConfig(**kwargs)  # type: ignore[arg-type]


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
    values[("b", "insertion")] = [0.5, 0.5, 0.5]
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
    assert second.metrics == {"insertion": (0.5, 0.0)}
    assert (first.passes_per_image, second.passes_per_image) == (11.0, 3.0)
    assert first.seconds_per_image == 0.5 and first.metric_seconds_per_image == 0.25
