"""Tabular explanations: estimators and MLPs, column names, background sets, CSV files."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from torch import nn

import faithmap
from faithmap.errors import ConstantMapWarning
from faithmap.tabular import (
    TabularExplanation,
    explain_csv,
    explain_rows,
    explain_with_background,
    tabular_model,
)

NAMES = ("age", "income", "debt", "tenure")


def small_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def rows(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def shapley_by_definition(
    value: Callable[[torch.Tensor], torch.Tensor], players: int
) -> torch.Tensor:
    """Shapley values from their definition, for a value function of keep vectors ``(F,)``."""
    phi = torch.zeros(players, dtype=torch.float64)
    for player in range(players):
        others = [p for p in range(players) if p != player]
        for size in range(players):
            weight: float = math.factorial(size) * math.factorial(players - size - 1)
            weight /= math.factorial(players)
            for members in itertools.combinations(others, size):
                keep = torch.zeros(players, dtype=torch.float64)
                keep[list(members)] = 1
                with_player = keep.clone()
                with_player[player] = 1
                phi[player] += weight * (value(with_player) - value(keep))
    return phi


def test_kernel_shap_on_a_linear_model_is_weight_times_difference_from_the_baseline() -> None:
    net = nn.Linear(4, 2).double()
    x = rows(5, 0)
    for exact, n_samples in ((True, 64), (False, 40)):
        result = explain_rows(net, x, NAMES, target=1, fill=0.5, exact=exact, n_samples=n_samples)
        torch.testing.assert_close(result.attributions, (x - 0.5) * net.weight[1].detach())


def test_kernel_shap_on_rows_is_exact_shapley_values() -> None:
    net, x = small_mlp(), rows(3, 1)
    result = faithmap.explain(net, x, method="kernel_shap", target=2, exact=True, fill=0.0)
    assert result.attributions.shape == (3, 4)
    with torch.no_grad():
        for i in range(3):

            def value(keep: torch.Tensor, i: int = i) -> torch.Tensor:
                scores: torch.Tensor = net(x[i] * keep)
                return scores[2]

            expected = shapley_by_definition(value, 4)
            torch.testing.assert_close(result.attributions[i], expected)


def test_background_expectation_is_the_shapley_value_of_the_expected_game() -> None:
    net, x, background = small_mlp(), rows(2, 2), rows(5, 3)
    result = explain_rows(net, x, NAMES, target=0, background=background, exact=True)
    assert result.explanation.cost.forward == 2 * 5 * 2**4
    with torch.no_grad():
        for i in range(2):

            def value(keep: torch.Tensor, i: int = i) -> torch.Tensor:
                mixed = x[i] * keep + background * (1 - keep)  # every background row
                scores: torch.Tensor = net(mixed)
                return scores[:, 0].mean()

            torch.testing.assert_close(result.attributions[i], shapley_by_definition(value, 4))
    # the mean mode is one baseline row: exact Shapley values of that single game
    mean = explain_rows(net, x, target=0, background=background, background_mode="mean")
    single = faithmap.explain(
        net, x, method="kernel_shap", target=0, fill=lambda z: background.mean(0).expand_as(z)
    )
    torch.testing.assert_close(mean.attributions, single.attributions)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_background_expectation_agrees_with_shap_kernel_explainer_on_predict_proba() -> None:
    import shap

    X = rows(60, 4).numpy()
    y = (X[:, 0] - 2 * X[:, 2] + 0.5 * X[:, 1] * X[:, 3] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)
    background = X[:6]
    ours = explain_rows(clf, X[10:13], target=1, background=background, exact=True)
    explainer = shap.KernelExplainer(lambda z: clf.predict_proba(z)[:, 1], background)
    theirs = explainer.shap_values(X[10:13], nsamples=2**4, silent=True)
    np.testing.assert_allclose(ours.attributions.numpy(), theirs, atol=1e-8)


def test_lime_ablation_and_ig_on_rows_with_a_background() -> None:
    net = nn.Linear(4, 1).double()
    x, background = rows(3, 5), rows(7, 6)
    weight = net.weight[0].detach()
    expected = (x - background.mean(0)) * weight
    for mode in ("expectation", "mean"):
        for method in ("feature_ablation", "integrated_gradients"):
            result = explain_rows(
                net, x, NAMES, method=method, background=background, background_mode=mode
            )
            torch.testing.assert_close(result.attributions, expected)
    # A linear model's expected game is linear in the keep vector, so LIME's surrogate without
    # the ridge penalty fits it exactly: its weights are the same (x - mean b) * w.
    lime = explain_rows(
        net, x, NAMES, method="lime", background=background, ridge=0.0, n_samples=64
    )
    assert lime.explanation.config["activation"] == "logits"  # one output: no softmax
    torch.testing.assert_close(lime.attributions, expected)


def test_a_fitted_sklearn_classifier_is_explained_through_predict_proba_with_its_names() -> None:
    X = pd.DataFrame(rows(80, 7).numpy(), columns=list(NAMES))
    y = (X["income"] - X["debt"] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)  # fitted with feature names
    shuffled = X[["debt", "tenure", "age", "income"]].iloc[:4]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns if it gets rows without names
        result = explain_rows(clf, shuffled, method="kernel_shap", target=1, background=X)
    assert result.feature_names == NAMES  # columns put back in the fitted order
    ordered = X.iloc[:4].to_numpy()
    torch.testing.assert_close(result.inputs, torch.tensor(ordered))
    probabilities = clf.predict_proba(X.iloc[:4])[:, 1]
    mean_probability = clf.predict_proba(X)[:, 1].mean()
    total = result.attributions.sum(1).numpy()  # efficiency: f(x) - E f(background)
    np.testing.assert_allclose(total, probabilities - mean_probability, atol=1e-10)
    top = [row[0][0] for row in result.top(1)]
    assert set(top) <= {"income", "debt"}
    frame = result.to_frame()
    assert list(frame.columns) == ["row", "feature", "feature_value", "attribution", "target"]
    assert frame["feature"].tolist()[:4] == list(NAMES)
    assert frame["target"].unique().tolist() == [1]


def test_a_regressor_is_explained_through_predict() -> None:
    X = rows(100, 8).numpy()
    y = 2 * X[:, 1] + np.sin(3 * X[:, 3])
    model = GradientBoostingRegressor(n_estimators=20, max_depth=2, random_state=0).fit(X, y)
    # Row 0 crosses no split of the stumps when any one column is zeroed: its map is all zero.
    with pytest.warns(ConstantMapWarning, match="feature_ablation returned an all-zero map for 1"):
        result = explain_rows(model, X[:3], NAMES, method="feature_ablation", target=0)
    zeroed = [X[:3].copy() for _ in range(4)]
    for j, copy in enumerate(zeroed):
        copy[:, j] = 0.0
    expected = np.stack([model.predict(X[:3]) - model.predict(z) for z in zeroed], 1)
    np.testing.assert_allclose(result.attributions.numpy(), expected, atol=1e-12)
    wrapped = tabular_model(LinearRegression().fit(X, y), batch_size=8)
    assert wrapped.outputs(torch.from_numpy(X[:5])).shape == (5, 1)


def test_gradient_methods_refuse_an_estimator_with_a_clear_error() -> None:
    clf = LogisticRegression().fit(rows(20, 9).numpy(), [0, 1] * 10)
    with pytest.raises(faithmap.ModelError, match="needs gradients"):
        explain_rows(clf, rows(2, 0), method="integrated_gradients")


def test_an_estimator_returning_labels_is_refused() -> None:
    class Labeller:
        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.array(["yes"] * len(X))

    with pytest.raises(faithmap.ModelError, match="class labels"):
        explain_rows(Labeller(), rows(2, 0), method="feature_ablation", target=0)


def test_explain_csv_reads_names_and_leaves_other_columns_out(tmp_path: Path) -> None:
    net = nn.Linear(3, 2)
    frame = pd.DataFrame(rows(4, 10).numpy()[:, :3], columns=["a", "b", "c"])
    frame["label"] = ["x", "y", "x", "y"]
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(faithmap.ShapeError, match=r"\['label'\] .* not numeric"):
        explain_csv(net, path, target=0)
    result = explain_csv(net, path, columns=["a", "b", "c"], method="feature_ablation", target=1)
    assert isinstance(result, TabularExplanation)
    assert result.feature_names == ("a", "b", "c")
    x = torch.tensor(frame[["a", "b", "c"]].to_numpy(), dtype=torch.float32)
    torch.testing.assert_close(result.attributions, x * net.weight[1].detach())
    lines = result.summary(2).splitlines()
    assert lines[0] == "feature_ablation: top 2 of 3 columns" and len(lines) == 5
    assert lines[1].startswith("row 0 (target 1): ")
    background = tmp_path / "background.csv"
    frame.iloc[:2].to_csv(background, index=False)
    centred = explain_csv(
        net, path, columns=["a", "b", "c"], target=1, background=background, exact=True
    )
    mean = x[:2].mean(0)
    torch.testing.assert_close(centred.attributions, (x - mean) * net.weight[1].detach())


def test_explain_csv_gives_an_estimator_the_columns_it_was_fitted_on(tmp_path: Path) -> None:
    X = pd.DataFrame(rows(40, 11).numpy(), columns=list(NAMES))
    y = (X["age"] + X["tenure"] > 0).astype(int)
    clf = LogisticRegression().fit(X[["tenure", "age"]], y)
    frame = X.assign(label=np.where(y == 1, "yes", "no"))
    frame.iloc[:3].to_csv(tmp_path / "rows.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = explain_csv(clf, tmp_path / "rows.csv", method="feature_ablation", target=1)
    assert result.feature_names == ("tenure", "age")
    read = pd.read_csv(tmp_path / "rows.csv")[["tenure", "age"]]
    zeroed = [read.assign(tenure=0.0), read.assign(age=0.0)]
    full = clf.predict_proba(read)[:, 1]
    expected = np.stack([full - clf.predict_proba(z)[:, 1] for z in zeroed], 1)
    np.testing.assert_allclose(result.attributions.numpy(), expected, atol=1e-12)


def test_wrong_shapes_and_names_are_clear_errors(tmp_path: Path) -> None:
    net = nn.Linear(4, 2).double()
    with pytest.raises(faithmap.ShapeError, match=r"x.reshape\(1, -1\)"):
        explain_rows(net, rows(1, 0)[0])
    with pytest.raises(faithmap.ShapeError, match=r"shape \(N, F\)"):
        explain_rows(net, torch.zeros(2, 4, 1, dtype=torch.float64))
    with pytest.raises(faithmap.InvalidParameterError, match=r"4 columns\. Got 3 names"):
        explain_rows(net, rows(2, 0), NAMES[:3])
    with pytest.raises(faithmap.InvalidParameterError, match=r"distinct names. Got \['age'\]"):
        explain_rows(net, rows(2, 0), ["age", "age", "debt", "tenure"])
    with pytest.raises(faithmap.ShapeError, match=r"rows of shape \(K, 4\)"):
        explain_rows(net, rows(2, 0), background=rows(3, 0)[:, :3])
    with pytest.raises(faithmap.InvalidParameterError, match="both a background and"):
        explain_rows(net, rows(2, 0), background=rows(3, 0), fill=1.0)
    with pytest.raises(faithmap.InvalidParameterError, match="uses no baseline"):
        explain_rows(net, rows(2, 0), method="saliency", background=rows(3, 0))
    with pytest.raises(faithmap.InvalidParameterError, match="'background_mode'"):
        explain_with_background(
            faithmap.get_method("kernel_shap"),
            faithmap.Model(net),
            rows(2, 0),
            0,
            rows(3, 0),
            mode="median",  # type: ignore[arg-type]
        )
    with pytest.raises(faithmap.InvalidParameterError, match=r"names columns \['zzz'\]"):
        path = tmp_path / "r.csv"
        pd.DataFrame(rows(2, 0).numpy(), columns=list(NAMES)).to_csv(path, index=False)
        explain_csv(net, path, columns=["age", "zzz"])
    with pytest.raises(faithmap.InvalidParameterError, match="cannot read the CSV"):
        explain_csv(net, tmp_path / "missing.csv")


def test_the_model_is_left_as_it_was() -> None:
    net = small_mlp().train()
    flags = [p.requires_grad for p in net.parameters()]
    explain_rows(net, rows(2, 0), method="integrated_gradients", target=0, steps=4)
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
