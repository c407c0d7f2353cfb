"""ROAD: the noisy linear imputation against a dense solve, and scores known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import faithmap
from faithmap import Model
from faithmap.metrics import linear_imputation, road

WEIGHTS = {(-1, -1): 1 / 12, (-1, 0): 1 / 6, (-1, 1): 1 / 12, (0, -1): 1 / 6}
WEIGHTS.update({(-a, -b): w for (a, b), w in list(WEIGHTS.items())})


def dense_imputation(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The reference system, built entry by entry and solved densely: (C, H, W), (H, W)."""
    height, width = removed.shape
    unknown = [(i, j) for i in range(height) for j in range(width) if removed[i, j]]
    index = {pixel: k for k, pixel in enumerate(unknown)}
    system = torch.zeros(len(unknown), len(unknown), dtype=torch.float64)
    rhs = torch.zeros(len(unknown), image.shape[0], dtype=torch.float64)
    for k, (i, j) in enumerate(unknown):
        for (di, dj), weight in WEIGHTS.items():
            a, b = i + di, j + dj
            if not (0 <= a < height and 0 <= b < width):
                continue
            system[k, k] += weight
            if removed[a, b]:
                system[k, index[(a, b)]] -= weight
            else:
                rhs[k] += weight * image[:, a, b].double()
    solution = torch.linalg.solve(system, rhs)
    filled = image.double().clone()
    for k, (i, j) in enumerate(unknown):
        filled[:, i, j] = solution[k]
    return filled


def test_imputation_matches_a_dense_solve() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 6, 7, generator=generator, dtype=torch.float64)
    removed = torch.rand(3, 1, 6, 7, generator=generator) < torch.tensor([0.3, 0.6, 0.9]).view(
        3, 1, 1, 1
    )
    filled = linear_imputation(images, removed, tol=1e-12)
    for n in range(3):
        torch.testing.assert_close(filled[n], dense_imputation(images[n], removed[n, 0]))


def test_systems_that_converge_early_leave_the_stack_with_their_solution() -> None:
    # holes from 5 % to 95 % of the pixels: the small ones converge in a few iterations and
    # are compacted away while the large ones go on
    generator = torch.Generator().manual_seed(1)
    fractions = torch.linspace(0.05, 0.95, 8).view(8, 1, 1, 1)
    images = torch.rand(8, 2, 16, 16, generator=generator, dtype=torch.float64)
    removed = torch.rand(8, 1, 16, 16, generator=generator) < fractions
    filled = linear_imputation(images, removed, tol=1e-12)
    for n in range(8):
        torch.testing.assert_close(filled[n], dense_imputation(images[n], removed[n, 0]))


def test_imputation_reproduces_a_linear_ramp_inside_the_image() -> None:
    rows = torch.arange(12.0, dtype=torch.float64).view(12, 1)
    cols = torch.arange(12.0, dtype=torch.float64).view(1, 12)
    ramp = (0.3 * rows - 0.2 * cols + 1.0).expand(12, 12).reshape(1, 1, 12, 12)
    removed = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    removed[..., 2:10, 3:9] = True
    torch.testing.assert_close(linear_imputation(ramp, removed, tol=1e-12), ramp)


# 10x10 images, 0 everywhere except a 2x5 object of ones (10 % of the pixels) in the middle;
# the model's class-0 logit is the mean of the object pixels minus 0.5.
OBJECT = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
OBJECT[..., 4:6, 3:8] = True
IMAGES = OBJECT.float().expand(2, 3, 10, 10).clone()
PERFECT = OBJECT.float().expand(2, 1, 10, 10) + torch.linspace(0, 0.01, 100).view(1, 1, 10, 10)


def object_logits(x: torch.Tensor) -> torch.Tensor:
    present = (x * OBJECT).flatten(1).sum(1) / (3 * OBJECT.sum())
    return torch.stack([present - 0.5, 0.5 - present], dim=1)


def object_model(batch_size: int = 7) -> Model:
    return Model(object_logits, batch_size=batch_size)


def test_perfect_and_worst_explanations() -> None:
    best = road(object_model(), IMAGES, PERFECT, target=0, noise=0.0, activation="logits")
    worst = road(object_model(), IMAGES, -PERFECT, target=0, noise=0.0, activation="logits")
    # MoRF removes the object first and fills it from the zero background; LeRF keeps it.
    torch.testing.assert_close(best.morf, torch.full((2, 9), -0.5))
    torch.testing.assert_close(best.lerf, torch.full((2, 9), 0.5))
    torch.testing.assert_close(best.values, torch.full((2,), 0.5))
    torch.testing.assert_close(worst.values, torch.full((2,), -0.5))
    assert best.higher_is_better and best.mean == pytest.approx(0.5)


def test_accuracy_measure() -> None:
    best = road(object_model(), IMAGES, PERFECT, target=0, noise=0.0, measure="accuracy")
    torch.testing.assert_close(best.morf, torch.zeros(2, 9))
    torch.testing.assert_close(best.lerf, torch.ones(2, 9))
    assert best.choices["measure"] == "accuracy"


def test_the_given_class_is_scored_not_class_zero() -> None:
    # Regression: the reference's "average probability" read class 0 whatever the target.
    result = road(object_model(), IMAGES, PERFECT, target=1, noise=0.0, activation="logits")
    torch.testing.assert_close(result.morf, torch.full((2, 9), 0.5))
    torch.testing.assert_close(result.values, torch.full((2,), -0.5))
    assert result.target is not None
    assert torch.equal(result.target, torch.ones(2, dtype=torch.long))


def test_fractions_count_whole_pixels_with_a_one_channel_map() -> None:
    # Regression: Quantus sizes k by the attribution array but ranks broadcast channel values.
    seen = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return object_logits(x)

    road(Model(spy, batch_size=64), IMAGES[:1], PERFECT[:1], target=0, noise=1.0, fractions=[0.3])
    morf_row = seen[-1][0]
    changed = (morf_row != IMAGES[0]).any(0)
    assert int(changed.sum()) == 30
    assert bool((morf_row != IMAGES[0]).all(0)[changed].all())


def test_model_that_ignores_its_input_scores_zero() -> None:
    def constant(x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[1.0, 2.0]]).expand(x.shape[0], 2)

    result = road(Model(constant), IMAGES, PERFECT, target=0)
    torch.testing.assert_close(result.values, torch.zeros(2))


def test_cost_batch_size_and_seed(images: torch.Tensor, tiny_net: nn.Module) -> None:
    attributions = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    small = road(Model(tiny_net, batch_size=3), images, attributions, fractions=[0.2, 0.7])
    large = road(Model(tiny_net, batch_size=64), images, attributions, fractions=[0.2, 0.7])
    torch.testing.assert_close(small.morf, large.morf)
    torch.testing.assert_close(small.lerf, large.lerf)
    assert small.cost.forward == 5 + 5 * 4
    other = road(Model(tiny_net, batch_size=3), images, attributions, fractions=[0.2, 0.7], seed=1)
    assert not torch.equal(small.morf, other.morf)


def test_explained_target_and_bad_fractions(images: torch.Tensor, tiny_net: nn.Module) -> None:
    model = Model(tiny_net, batch_size=16)
    explanation = faithmap.explain(model, images, method="saliency", target=3)
    result = road(model, images, explanation, fractions=[0.5])
    assert result.choices["target"] == "explained"
    assert result.target is not None
    assert torch.equal(result.target, torch.full((5,), 3))
    with pytest.raises(faithmap.InvalidParameterError, match="fractions"):
        road(model, images, explanation, fractions=[1.0])
