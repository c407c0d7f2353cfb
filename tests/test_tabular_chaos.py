"""ChaosMining-style tabular ground truth: the analytic truths, the scores, and their recovery."""

from __future__ import annotations

import pytest
import torch

import faithmap
from faithmap.metrics import METRICS
from faithmap.tabular import FORMULAS, chaos_regression, top_k_features, uniformity_score
from faithmap.tabular.mlp import fit_regressor, mlp_regressor

ADDITIVE = [i for i, formula in enumerate(FORMULAS) if formula.additive]


def test_the_set_has_the_reference_layout() -> None:
    assert len(FORMULAS) == 15
    assert [f.variables for f in FORMULAS] == [1] * 6 + list(range(2, 11))
    assert ADDITIVE == [0, 1, 2, 3, 4, 5, 6, 12]
    data = chaos_regression(9, n_samples=300, n_noise=4, x_std=0.33, y_std=0.0, seed=3)
    assert data.inputs.shape == (300, 9)
    assert bool((data.inputs.abs() <= 1).all())
    # The clip leaves an N(0, 0.33) column nearly untouched: its standard deviation is ~0.33.
    assert abs(float(data.inputs.std()) - 0.33) < 0.02
    assert data.relevant[:, :5].all() and not data.relevant[:, 5:].any()
    assert data.feature_names == ("a", "b", "c", "d", "e", "noise0", "noise1", "noise2", "noise3")
    x = data.inputs.double()
    expected = (x[:, 0] - x[:, 1]) ** 2 + 0.2 * (x[:, 2] + x[:, 3] * x[:, 4]) ** 3 - 1
    torch.testing.assert_close(data.targets.double(), expected, atol=1e-6, rtol=0)
    again = chaos_regression(9, n_samples=300, n_noise=4, x_std=0.33, y_std=0.0, seed=3)
    assert torch.equal(again.inputs, data.inputs)


@pytest.mark.parametrize("index", range(15))
def test_ground_truths_match_their_definitions(index: int) -> None:
    data = chaos_regression(index, n_samples=20, n_noise=2, steps=20, dtype=torch.float64)
    model, x, k = data.model(), data.inputs, data.formula.variables
    for truth in (data.derivative, data.ablation, data.path_sum):
        assert bool((truth[:, k:] == 0).all())
    for i in range(k):
        step = torch.zeros_like(x)
        step[:, i] = 1e-6
        central = (model(x + step) - model(x - step))[:, 0] / 2e-6
        torch.testing.assert_close(data.derivative[:, i], central, atol=1e-6, rtol=1e-6)
        zeroed = x.clone()
        zeroed[:, i] = 0
        torch.testing.assert_close(data.ablation[:, i], (model(x) - model(zeroed))[:, 0])
        total = torch.zeros(20, dtype=torch.float64)
        for t in range(20):
            point = x * t / 20
            moved = point.clone()
            moved[:, i] += x[:, i] / 20
            total += (model(moved) - model(point))[:, 0]
        torch.testing.assert_close(data.path_sum[:, i], total)
    if data.formula.additive:  # the path telescopes: f_i(x_i) - f_i(0), the ablation
        torch.testing.assert_close(data.path_sum, data.ablation)


def test_uniformity_is_one_for_the_truth_and_zero_for_mass_on_distractors() -> None:
    data = chaos_regression(7, n_samples=10, n_noise=3)
    assert uniformity_score(data.ablation * 4.0, data.ablation, data.relevant).values.eq(1).all()
    wrong = torch.zeros_like(data.ablation)
    wrong[:, 3:] = 1.0
    # each relevant column scores 1 - |g| / (|g| + 1e-7) = 1e-7 / (|g| + 1e-7): zero but for eps
    g = (data.ablation / data.ablation.abs().sum(1, keepdim=True))[:, :3].double().abs()
    floor = (1e-7 / (g + 1e-7)).mean(1).float()
    torch.testing.assert_close(uniformity_score(wrong, data.ablation, data.relevant).values, floor)
    zero = uniformity_score(torch.zeros_like(data.ablation), data.ablation, data.relevant)
    torch.testing.assert_close(zero.values, floor)
    assert float(floor.max()) < 1e-4
    # one relevant column of two right, the other with the opposite sign: (1 + 0) / 2
    truth = torch.tensor([[1.0, 1.0, 0.0]])
    half = uniformity_score(torch.tensor([[1.0, -1.0, 0.0]]), truth, torch.tensor([1, 1, 0]))
    torch.testing.assert_close(half.values, torch.tensor([0.5]))


def test_top_k_counts_relevant_columns_and_breaks_ties_at_random() -> None:
    masks = torch.zeros(400, 10, dtype=torch.bool)
    masks[:, :2] = True
    perfect = masks.float() * torch.tensor([3.0, -2.0] + [0.0] * 8)
    assert top_k_features(perfect, masks).mean == 1.0
    assert top_k_features(-perfect[:, [2, 3, 4, 5, 6, 7, 8, 9, 0, 1]], masks).mean == 0.0
    # a constant map must not score 1 just because the relevant columns come first
    constant = top_k_features(torch.ones(400, 10), masks, seed=1)
    assert abs(constant.mean - 0.2) < 0.05  # chance: k/F; its std over 400 rows is ~0.013
    assert top_k_features(torch.ones(400, 10), masks, seed=1).mean == constant.mean
    noise = torch.randn(400, 10, generator=torch.Generator().manual_seed(0))
    assert abs(top_k_features(noise, masks).mean - 0.2) < 0.05
    torch.testing.assert_close(top_k_features(perfect, masks, k=4).values, torch.full((400,), 0.5))


def test_top_k_is_a_registered_mask_metric() -> None:
    assert METRICS["top_k_features"].arguments == ("explanation", "masks")
    data = chaos_regression(6, n_samples=8, n_noise=2)
    result = METRICS["top_k_features"].run(None, data.inputs, data.ablation, masks=data.relevant)
    assert result.higher_is_better and result.mean == 1.0
    table = faithmap.evaluate(
        None,  # mask metrics need no model
        data.inputs,
        {"truth": data.ablation},
        metrics=["top_k_features"],
        masks=data.relevant,
    )
    assert table["value"].tolist() == [1.0] * 8


def test_score_errors_name_the_problem() -> None:
    data = chaos_regression(6, n_samples=4, n_noise=2)
    with pytest.raises(faithmap.ShapeError, match=r"shape \(N, F\)"):
        top_k_features(torch.zeros(4, 1, 2, 2), data.relevant)
    with pytest.raises(faithmap.ShapeError, match="must have the attributions' shape"):
        top_k_features(data.ablation, data.relevant[:, :3])
    with pytest.raises(faithmap.ShapeError, match="boolean"):
        uniformity_score(data.ablation, data.ablation, data.ablation)
    with pytest.raises(faithmap.ShapeError, match="at most the number of columns"):
        top_k_features(data.ablation, data.relevant, k=5)
    with pytest.raises(faithmap.InvalidParameterError, match=r"index in \[0, 14\]"):
        chaos_regression(15)


@pytest.mark.parametrize("index", ADDITIVE)
def test_the_formula_as_model_is_recovered_by_gradient_and_shapley_methods(index: int) -> None:
    data = chaos_regression(index, n_samples=24, n_noise=6, dtype=torch.float64)
    model = faithmap.Model(data.model(), batch_size=1024)
    ig = faithmap.explain(model, data.inputs, method="integrated_gradients", target=0, steps=32)
    shap = faithmap.explain(model, data.inputs, method="kernel_shap", target=0, n_samples=256)
    for explanation, truth in ((ig, data.path_sum), (shap, data.ablation)):
        assert top_k_features(explanation, data.relevant).mean >= 0.9
        # exact up to quadrature and rounding: the Shapley values of an additive function
        # with a zero baseline are its ablations, and its IG is the telescoped path sum
        assert uniformity_score(explanation, truth, data.relevant).mean > 0.999
    ablation = faithmap.explain(model, data.inputs, method="feature_ablation", target=0)
    torch.testing.assert_close(ablation.attributions, data.ablation)
    saliency = faithmap.explain(model, data.inputs, method="saliency", target=0, absolute=False)
    torch.testing.assert_close(saliency.attributions, data.derivative)


@pytest.mark.parametrize("index", [3, 6])
def test_a_trained_mlp_is_recovered_on_additive_formulas(index: int) -> None:
    # x_std=1 (clipped to [-1, 1]) keeps every relevant term above the model's error; at the
    # reference's 0.33 the cubic term of formula 6 is ~0.01, below a small MLP's leakage.
    train = chaos_regression(index, n_samples=1000, n_noise=10, x_std=1.0, seed=0)
    test = chaos_regression(index, n_samples=64, n_noise=10, x_std=1.0, seed=1)
    net = mlp_regressor(train.inputs.shape[1], (32, 32))
    loss = fit_regressor(net, train.inputs, train.targets, epochs=300, lr=1e-2, seed=0)
    assert loss < 0.05 * float(train.targets.var())  # the fit explains > 95% of the variance
    model = faithmap.Model(net, batch_size=1024)
    ig = faithmap.explain(model, test.inputs, method="integrated_gradients", target=0, steps=16)
    shap = faithmap.explain(model, test.inputs, method="kernel_shap", target=0, n_samples=200)
    assert top_k_features(ig, test.relevant).mean >= 0.9
    assert top_k_features(shap, test.relevant).mean >= 0.9
    random = torch.randn(test.inputs.shape, generator=torch.Generator().manual_seed(0))
    assert top_k_features(random, test.relevant).mean < 0.5


def test_training_is_seeded_and_leaves_the_global_generator_alone() -> None:
    data = chaos_regression(0, n_samples=50, n_noise=2)
    nets = [mlp_regressor(3, (8,)) for _ in range(2)]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    losses = [fit_regressor(net, data.inputs, data.targets, epochs=5, seed=4) for net in nets]
    assert torch.equal(torch.rand(1), before)
    assert losses[0] == losses[1]
    assert not nets[0].training
