"""ROAR and KAR (faithmap.bench.roar): the protocol on a toy task with known informative pixels,
the pixel removal, resuming an interrupted run, the summary's claims, and the CLI suite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from faithmap.bench.roar import (
    FILLS,
    IMPUTATION_NOISE,
    ORIGINAL,
    RANDOM,
    RoarConfig,
    plan_roar,
    remove_pixels,
    retrain,
    run_roar,
)
from faithmap.bench.roar_suite import CHANCE, summarize
from faithmap.bench.store import Store
from faithmap.bench.work import Row
from faithmap.cli import app
from faithmap.errors import InvalidParameterError
from faithmap.metrics.road import linear_imputation

SIDE = 8
INFORMATIVE = [(1, 1), (2, 5), (5, 2), (6, 6)]
"""The only pixels that tell the toy's class: all 1 for class 1, all 0 for class 0."""


def _toy(n: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, SIDE, SIDE, generator=generator)
    labels = torch.arange(n) % 2
    for row, col in INFORMATIVE:
        images[:, :, row, col] = labels[:, None].float()
    return images, labels


def _toy_maps(n: int, *, perfect: bool) -> Tensor:
    informative = torch.zeros(SIDE, SIDE)
    for row, col in INFORMATIVE:
        informative[row, col] = 1.0
    single = informative if perfect else 1.0 - informative
    return single.expand(n, SIDE, SIDE).clone()


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 2))


def test_the_toy_task_is_learnt_from_unmodified_images() -> None:
    assert retrain(_linear, _toy(512, seed=0), _toy(400, seed=1), epochs=5) > 0.95


@pytest.mark.parametrize("fill_name", FILLS)
@pytest.mark.parametrize(
    ("perfect", "keep", "informative_left"),
    [(True, False, False), (False, False, True), (True, True, True), (False, True, False)],
)
def test_roar_and_kar_on_a_toy_task_with_known_informative_pixels(
    fill_name: str, perfect: bool, keep: bool, informative_left: bool
) -> None:
    train, test = _toy(512, seed=0), _toy(400, seed=1)
    fill = train[0].mean(dim=(0, 2, 3)) if fill_name == "mean" else fill_name
    fraction = len(INFORMATIVE) / SIDE**2  # exactly the informative pixels are the top
    modified = [
        (remove_pixels(x, _toy_maps(len(x), perfect=perfect), fraction, fill=fill, keep=keep), y)
        for x, y in (train, test)
    ]
    score = retrain(_linear, modified[0], modified[1], epochs=5)
    if informative_left:  # the anti map under ROAR, the perfect map under KAR
        assert score > 0.95
    else:  # chance is 0.5; 400 test images: its standard deviation is 0.025
        assert abs(score - 0.5) < 0.1


def test_remove_pixels_replaces_exactly_the_top_fraction_or_all_the_rest() -> None:
    images = torch.rand(2, 3, 4, 5)
    maps = torch.arange(40.0).view(2, 4, 5)  # pixel 19 of each image is the top one
    fill = torch.tensor([-1.0, -2.0, -3.0])
    before = images.clone()
    removed = remove_pixels(images, maps, 0.25, fill=fill)  # int(0.25 * 20) = 5 pixels
    kept = remove_pixels(images, maps, 0.25, fill=fill, keep=True)
    assert torch.equal(images, before)
    top = torch.zeros(4, 5, dtype=torch.bool)
    top.view(-1)[15:] = True
    for result, replaced in ((removed, top), (kept, ~top)):
        assert torch.equal(result[:, :, ~replaced], images[:, :, ~replaced])
        expected = fill.view(1, 3, 1).expand(2, 3, int(replaced.sum()))
        assert torch.equal(result[:, :, replaced], expected)


def test_the_noisy_linear_fill_keeps_the_kept_pixels_and_imputes_the_removed_ones() -> None:
    images = torch.rand(3, 3, 16, 16)
    maps = torch.rand(3, 16, 16)
    removed = remove_pixels(images, maps, 0.3, fill="noisy_linear", seed=4)
    top = (maps.flatten(1).argsort(1, descending=True).argsort(1) < int(0.3 * 256)).view(3, 16, 16)
    replaced = top[:, None].expand_as(images)
    assert torch.equal(removed[~replaced], images[~replaced])
    # imputed values are weighted means of neighbours (in [0, 1]) plus noise of sd 0.01
    noise = removed[replaced] - linear_imputation(images, top[:, None])[replaced]
    assert 0.008 < float(noise.std()) < 0.012 and abs(float(noise.mean())) < 0.002
    assert torch.equal(removed, remove_pixels(images, maps, 0.3, fill="noisy_linear", seed=4))
    assert not torch.equal(removed, remove_pixels(images, maps, 0.3, fill="noisy_linear", seed=5))


def test_the_fill_is_part_of_the_run_identity() -> None:
    mean, imputed = RoarConfig(fill="mean"), RoarConfig(fill="noisy_linear")
    assert mean.identity()["fill"] == "mean" and "noise" not in mean.identity()
    assert imputed.identity()["fill"] == "noisy_linear"
    assert imputed.identity()["noise"] == IMPUTATION_NOISE
    assert mean.hash != imputed.hash


def test_the_noisy_linear_fill_refuses_to_remove_every_pixel() -> None:
    with pytest.raises(InvalidParameterError, match="kept pixel in every image"):
        remove_pixels(torch.rand(2, 3, 4, 4), torch.rand(2, 4, 4), 1.0, fill="noisy_linear")


def test_remove_pixels_refuses_maps_of_another_shape() -> None:
    with pytest.raises(InvalidParameterError, match="one \\(H, W\\) map per image"):
        remove_pixels(torch.rand(2, 3, 4, 4), torch.rand(2, 5, 5), 0.5, fill=torch.zeros(3))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fractions": (0.5, 1.0)}, "nothing to train on"),
        ({"fractions": (0.5, 0.5)}, "without repeats"),
        ({"methods": {"random": ("saliency", {})}}, "cannot label a ROAR method"),
        ({"methods": ["no_such_method"]}, "no_such_method"),
        ({"modes": ("roar", "keep")}, "Unknown ROAR modes"),
        ({"model": "detector"}, "built-in model"),
        ({"n_eval": 600}, "must not exceed n_test"),
        ({"train_size": 128}, "must not exceed 'size'"),
        ({"fill": "zero"}, "fill"),
    ],
)
def test_config_refuses_bad_settings(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        RoarConfig(**options)  # type: ignore[arg-type]


TINY = {
    "methods": ["saliency"],
    "fractions": (0.5,),
    "seeds": (0, 1),
    "modes": ("roar", "kar"),
    "n_train": 48,
    "n_test": 16,
    "n_eval": 1,
    "epochs": 1,
}


def _keyed(rows: list[Row]) -> dict[tuple[str, str, int], float]:
    return {(row.method, row.metric, row.sample): row.value for row in rows}


def test_an_interrupted_run_resumes_with_every_result_once(tmp_path: Path) -> None:
    config = RoarConfig(**TINY, out=tmp_path / "whole")  # type: ignore[arg-type]
    whole = run_roar(config)
    tasks = plan_roar(config)
    # 2 unmodified + 2 labels x (1 scoring + 2 modes x 1 fraction x 2 seeds)
    assert len(tasks) == 12 and len({task.id for task in tasks}) == 12
    assert len(whole) == 2 + 2 * (3 + 4)  # scoring: insertion, deletion, ROAD of one image

    interrupted = RoarConfig(**TINY, out=tmp_path / "cut")  # type: ignore[arg-type]
    stored: list[str] = []

    def stop_after_five(line: str) -> None:
        stored.append(line)
        if len(stored) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_roar(interrupted, log=stop_after_five)
    with Store(interrupted.out) as store:
        assert len(store.done(store.run())) == 5
    resumed: list[str] = []
    rows = run_roar(interrupted, log=resumed.append)
    assert len(resumed) == len(tasks) - 5  # only the missing tasks ran
    assert len(rows) == len(whole)
    assert len(_keyed(rows)) == len(rows)  # no result twice
    assert _keyed(rows) == _keyed(whole)
    assert {row.metric for row in rows if row.method == ORIGINAL} == {"accuracy"}
    assert {row.metric for row in rows if row.method == RANDOM} == {
        "roar@50",
        "kar@50",
        "insertion",
        "deletion",
        "road",
    }


def _row(method: str, metric: str, value: float, sample: int = 0) -> Row:
    return Row(method=method, metric=metric, value=value, sample=sample, model="cnn", target=-1,
               explain_forward=0.0, explain_backward=0.0, explain_seconds=0.0, metric_forward=0.0,
               metric_backward=0.0, metric_seconds=0.0, params="{}")  # fmt: skip


def test_summary_states_the_claims_from_hand_made_rows() -> None:
    methods = ["saliency", "integrated_gradients", "guided_backprop", "smoothgrad_sq"]
    config = RoarConfig(methods=methods, fractions=(0.1, 0.9), seeds=(0,), modes=("roar",))
    roar = {  # smoothgrad_sq below random at both fractions; the plain three not
        "saliency": (0.8, 0.6),
        "integrated_gradients": (0.85, 0.65),
        "guided_backprop": (0.9, 0.7),
        "smoothgrad_sq": (0.5, 0.2),
        RANDOM: (0.8, 0.6),
    }
    deletion = {  # the same order as ROAR: a perfect agreement
        "saliency": 0.2,
        "integrated_gradients": 0.3,
        "guided_backprop": 0.4,
        "smoothgrad_sq": 0.1,
        RANDOM: 0.5,
    }
    rows = [_row(ORIGINAL, "accuracy", 0.9)]
    for label, (low, high) in roar.items():
        rows += [_row(label, "roar@10", low), _row(label, "roar@90", high)]
        rows += [_row(label, "deletion", deletion[label])]
        rows += [_row(label, "insertion", 1.0 - deletion[label]), _row(label, "road", 0.0)]
    summary = summarize(rows, config)
    assert summary.original == 0.9
    assert summary.scores["smoothgrad_sq"]["roar"] == pytest.approx(0.35)
    assert summary.correlations["deletion"] == pytest.approx(1.0)
    assert summary.correlations["insertion"] == pytest.approx(1.0)
    assert math.isnan(summary.correlations["road"])  # a flat ranking
    kept = (0.6 - CHANCE) / (0.9 - CHANCE)  # 0.59 of the margin over chance
    text = "\n".join(summary.findings)
    assert f"{100 * kept:.0f} % of the margin" in text
    assert summary.findings[0].startswith("Random removal degrades accuracy slowly: holds")
    assert "are no better than a random ranking under ROAR: holds" in summary.findings[1]
    assert "beat a random ranking under ROAR: holds" in summary.findings[2]
    assert "ROAR ranks methods differently from deletion: does not hold" in text


def test_a_method_beats_random_by_its_mean_over_the_fractions_not_at_the_chance_floor() -> None:
    config = RoarConfig(methods=["saliency"], fractions=(0.1, 0.9), seeds=(0,), modes=("roar",))
    # far below random at 10 %; at 90 % both at chance, saliency 0.01 above by noise
    rows = [_row(ORIGINAL, "accuracy", 0.9)]
    for label, (low, high) in {"saliency": (0.4, 0.18), RANDOM: (0.9, 0.17)}.items():
        rows += [_row(label, "roar@10", low), _row(label, "roar@90", high)]
        rows += [_row(label, metric, 0.5) for metric in ("insertion", "deletion", "road")]
    summary = summarize(rows, config)
    assert "are no better than a random ranking under ROAR: does not hold" in summary.findings[1]
    assert "saliency 0.290 (below random)" in summary.findings[1]


def test_the_suite_runs_from_the_command_line(tmp_path: Path) -> None:
    options = {**TINY, "seeds": [0], "modes": ["roar"], "fractions": [0.5]}
    toml = "\n".join(f"{key} = {json.dumps(value)}" for key, value in options.items())
    (tmp_path / "roar.toml").write_text(toml + "\n")
    out = tmp_path / "out"
    args = ["bench", "--suite", "roar", "--config", str(tmp_path / "roar.toml")]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Retrained test accuracy" in result.output
    assert "Random removal degrades accuracy slowly" in result.output
    saved = json.loads((out / "roar.json").read_text())
    assert set(saved["accuracy"]["roar"]) == {"saliency", RANDOM}
    refused = CliRunner().invoke(app, [*args, "--out", str(out), "--models", "resnet"])
    assert refused.exit_code == 2 and "--models" in refused.output


def test_ctrl_c_in_the_suite_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> list[Row]:
        raise KeyboardInterrupt

    monkeypatch.setattr("faithmap.cli.bench_roar.run_roar", interrupted)
    result = CliRunner().invoke(
        app, ["bench", "--suite", "roar", "--out", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 130
    assert "0 of 37 tasks are stored" in result.output  # 2 + 5 labels x (1 + 3 x 2)
    assert "run the same command again to resume" in result.output
