"""faithmap.evaluate: one tidy row per sample × method × metric, checks before any work."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, cast

import pytest
import torch
from torch import nn

import faithmap
from faithmap.core.model import Model
from faithmap.errors import FaithmapError, InvalidParameterError, ShapeError
from faithmap.evaluation import COLUMNS
from faithmap.metrics import deletion, insertion, pointing_game, random_logit, sparseness


class Counting(nn.Module):
    """A linear classifier that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 8 * 8, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        logits: torch.Tensor = self.linear(x.flatten(1))
        return logits


Setup = tuple[Model, torch.Tensor, dict[str, faithmap.Explanation], torch.Tensor]
"""The model, inputs, explanations by label and masks of the ``setup`` fixture."""


@pytest.fixture
def setup() -> Setup:
    net = Counting()
    model = Model(net, batch_size=16)
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    explanations = {
        "saliency": faithmap.explain(model, x, method="saliency"),
        "ig": faithmap.explain(model, x, method="integrated_gradients", steps=4),
    }
    masks = torch.zeros(3, 1, 8, 8, dtype=torch.bool)
    masks[0, :, 2:5, 1:6] = True
    masks[1, :, 4:, 4:] = True  # sample 2 has an empty mask
    return model, x, explanations, masks


def test_rows_columns_and_values_match_the_metrics(setup: Setup) -> None:
    model, x, explanations, masks = setup
    params: dict[str, dict[str, Any]] = {
        "insertion": {"steps": 4},
        "deletion": {"steps": 4, "fill": 0.5},
    }
    metrics = ["insertion", "deletion", "sparseness", "pointing_game"]
    table = faithmap.evaluate(model, x, explanations, metrics=metrics, masks=masks, params=params)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 3 * 2 * 4
    for label, explanation in explanations.items():
        expected = {
            "insertion": insertion(model, x, explanation, steps=4),
            "deletion": deletion(model, x, explanation, steps=4, fill=0.5),
            "sparseness": sparseness(explanation),
            "pointing_game": pointing_game(explanation, masks),
        }
        for name, result in expected.items():
            rows = table[(table["method"] == label) & (table["metric"] == name)]
            assert rows["sample"].tolist() == [0, 1, 2]
            got = torch.tensor(rows["value"].tolist(), dtype=torch.float64)
            torch.testing.assert_close(got, result.values.double(), equal_nan=True)
            assert rows["higher_is_better"].tolist() == [result.higher_is_better] * 3
            assert json.loads(rows["choices"].iloc[0]) == json.loads(
                json.dumps(result.choices, sort_keys=True)
            )
    insertion_rows = table[table["metric"] == "insertion"]
    assert insertion_rows["passes"].tolist() == [5.0] * 6  # steps + 1 per sample
    assert (table[table["metric"] == "sparseness"]["passes"] == 0).all()
    targets = insertion_rows["target"].tolist()[:3]
    assert targets == explanations["saliency"].target.tolist()  # type: ignore[union-attr]
    assert table[table["metric"] == "sparseness"]["target"].isna().all()
    assert (table["seconds"] >= 0).all()
    # The empty mask is NaN, not a hit.
    pointing = table[(table["metric"] == "pointing_game") & (table["sample"] == 2)]
    assert all(math.isnan(v) for v in pointing["value"])


def test_a_single_explanation_is_labelled_by_its_method(setup: Setup) -> None:
    model, x, explanations, _ = setup
    table = faithmap.evaluate(model, x, explanations["ig"], metrics=["complexity"])
    assert table["method"].unique().tolist() == ["integrated_gradients"]
    assert len(table) == 3


def test_default_metrics_are_insertion_and_deletion(setup: Setup) -> None:
    model, x, explanations, _ = setup
    params = {"insertion": {"steps": 2}, "deletion": {"steps": 2}}
    table = faithmap.evaluate(model, x, {"s": explanations["saliency"]}, params=params)
    assert table["metric"].unique().tolist() == ["insertion", "deletion"]


def test_missing_masks_fail_before_any_model_call(setup: Setup) -> None:
    model, x, explanations, _ = setup
    net = cast(Counting, model.module)
    before = net.calls
    with pytest.raises(FaithmapError, match=r"\['pointing_game'\] score explanations against"):
        faithmap.evaluate(model, x, explanations, metrics=["insertion", "pointing_game"])
    assert net.calls == before


def test_bad_arguments_raise_clear_errors(setup: Setup) -> None:
    model, x, explanations, _ = setup
    with pytest.raises(InvalidParameterError, match="Unknown metric 'nope'"):
        faithmap.evaluate(model, x, explanations, metrics=["nope"])
    with pytest.raises(InvalidParameterError, match="names metrics that are not evaluated"):
        faithmap.evaluate(model, x, explanations, metrics=["sparseness"], params={"insertion": {}})
    with pytest.raises(InvalidParameterError, match="non-empty list of metric names"):
        faithmap.evaluate(model, x, explanations, metrics="insertion")
    with pytest.raises(InvalidParameterError, match="non-empty mapping"):
        faithmap.evaluate(model, x, {}, metrics=["sparseness"])
    with pytest.raises(ShapeError, match="has 2 maps but the inputs have 3"):
        faithmap.evaluate(model, x, {"a": torch.rand(2, 1, 8, 8)}, metrics=["sparseness"])
    with pytest.raises(InvalidParameterError, match=r"\['insertion'\] run the model"):
        faithmap.evaluate(None, x, explanations, metrics=["sparseness", "insertion"])


def test_map_only_metrics_need_no_model(setup: Setup) -> None:
    _, x, explanations, _ = setup
    table = faithmap.evaluate(None, x, explanations, metrics=["sparseness", "complexity"])
    assert set(table["metric"]) == {"sparseness", "complexity"}
    assert (table["passes"] == 0).all()


def test_missing_pandas_gives_a_clear_error(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, explanations, _ = setup
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(FaithmapError, match="pip install pandas"):
        faithmap.evaluate(model, x, explanations, metrics=["sparseness"])


def test_sanity_metrics_run_through_evaluate(setup: Setup) -> None:
    model, x, explanations, _ = setup
    params: dict[str, dict[str, Any]] = {
        "random_logit": {"similarity": "spearman"},
        "model_randomisation": {"seed": 1},
    }
    table = faithmap.evaluate(
        model, x, {"s": explanations["saliency"]}, metrics=list(params), params=params
    )
    direct = random_logit(model, x, explanations["saliency"], similarity="spearman")
    rows = table[table["metric"] == "random_logit"]
    torch.testing.assert_close(
        torch.tensor(rows["value"].tolist(), dtype=torch.float64), direct.values.double()
    )
    randomised = table[table["metric"] == "model_randomisation"]
    assert randomised["passes"].tolist() == [2.0] * 3  # one layer: a forward and a backward
    assert not randomised["higher_is_better"].any()
