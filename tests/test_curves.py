"""Insertion and deletion on a model whose curve is known by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import faithmap
from faithmap import Model
from faithmap.metrics import deletion, insertion, trapezoid_auc

# 10x10 single-channel images of ones; the model's class-0 probability is the fraction of the
# first two rows (20 pixels, the "object") still present. With steps=10, 10 pixels move per step.
OBJECT = torch.zeros(1, 1, 10, 10)
OBJECT[..., :2, :] = 1


def object_fraction(x: torch.Tensor) -> torch.Tensor:
    present = (x * OBJECT).flatten(1).sum(1) / OBJECT.sum()
    return torch.stack([present, 1 - present], dim=1)


def model() -> Model:
    return Model(object_fraction, outputs="probabilities", batch_size=8)


PERFECT = OBJECT.expand(3, 1, 10, 10) + torch.linspace(0, 0.1, 100).view(1, 1, 10, 10)
REVERSED = -PERFECT
IMAGES = torch.ones(3, 1, 10, 10)


def test_trapezoid_rule_on_unit_interval() -> None:
    curve = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(trapezoid_auc(curve), torch.tensor([0.5, 0.25]))


def test_deletion_removes_the_most_important_pixels_first() -> None:
    best = deletion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0)
    worst = deletion(model(), IMAGES, REVERSED, target=0, steps=10, fill=0.0)
    expected_best = torch.tensor([1.0, 0.5] + [0.0] * 9)
    expected_worst = torch.tensor([1.0] * 9 + [0.5, 0.0])
    torch.testing.assert_close(best.curve, expected_best.expand(3, 11))
    torch.testing.assert_close(worst.curve, expected_worst.expand(3, 11))
    torch.testing.assert_close(best.auc, torch.full((3,), 0.1))
    torch.testing.assert_close(worst.auc, torch.full((3,), 0.9))
    assert not best.higher_is_better


def test_insertion_inserts_the_most_important_pixels_first() -> None:
    best = insertion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0)
    worst = insertion(model(), IMAGES, REVERSED, target=0, steps=10, fill=0.0)
    torch.testing.assert_close(best.auc, torch.full((3,), 0.9))
    torch.testing.assert_close(worst.auc, torch.full((3,), 0.1))
    torch.testing.assert_close(best.fractions, torch.linspace(0, 1, 11))
    assert best.higher_is_better and best.mean == pytest.approx(0.9)


def test_model_that_ignores_its_input_gives_flat_curves() -> None:
    def constant(x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.3, 0.7]]).expand(x.shape[0], 2)

    flat = Model(constant, outputs="probabilities")
    for metric in (insertion, deletion):
        result = metric(flat, IMAGES, PERFECT, target=1, steps=5)
        torch.testing.assert_close(result.curve, torch.full((3, 6), 0.7))
        torch.testing.assert_close(result.auc, torch.full((3,), 0.7))


def test_cost_counts_every_curve_point() -> None:
    result = deletion(model(), IMAGES, PERFECT, steps=10)
    # 3 predictions to resolve the target, then 11 points per image.
    assert result.cost.forward == 3 + 3 * 11
    assert result.choices == {
        "fill": "constant(0)",
        "steps": 10,
        "seed": 0,
        "activation": "softmax",
        "target": "predicted",
        "unit": "pixel",
        "order": "morf",
        "rank_by": "signed",
    }


def test_target_defaults_to_the_explained_class(images: torch.Tensor, tiny_net: nn.Module) -> None:
    explanation = faithmap.explain(tiny_net, images, method="saliency", target=2)
    result = insertion(tiny_net, images, explanation, steps=4)
    assert result.choices["target"] == "explained"
    assert result.target is not None
    assert torch.equal(result.target, torch.full((5,), 2))


def test_batch_size_invariance(images: torch.Tensor, tiny_net: nn.Module) -> None:
    attributions = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    small = insertion(Model(tiny_net, batch_size=3), images, attributions, steps=7)
    large = insertion(Model(tiny_net, batch_size=64), images, attributions, steps=7)
    torch.testing.assert_close(small.curve, large.curve)


def test_ties_are_broken_by_the_seed(images: torch.Tensor, tiny_net: nn.Module) -> None:
    uniform = torch.zeros(5, 1, 16, 16)
    first = deletion(tiny_net, images, uniform, steps=4, seed=1)
    again = deletion(tiny_net, images, uniform, steps=4, seed=1)
    other = deletion(tiny_net, images, uniform, steps=4, seed=2)
    assert torch.equal(first.curve, again.curve)
    assert not torch.equal(first.curve, other.curve)
    torch.testing.assert_close(first.curve[:, [0, -1]], other.curve[:, [0, -1]])


def test_default_insertion_starts_from_a_blur(images: torch.Tensor, tiny_net: nn.Module) -> None:
    from faithmap.core.removal import gaussian_blur

    result = insertion(tiny_net, images, torch.rand(5, 1, 16, 16), steps=2)
    assert result.target is not None
    blurred = Model(tiny_net).outputs(gaussian_blur(images, 11, 5.0), activation="softmax")
    torch.testing.assert_close(result.curve[:, 0], blurred.gather(1, result.target[:, None])[:, 0])
    clean = Model(tiny_net).outputs(images, activation="softmax")
    torch.testing.assert_close(result.curve[:, -1], clean.gather(1, result.target[:, None])[:, 0])


def test_patches_are_ranked_by_their_mean_attribution() -> None:
    # 25 patches of 2x2; the object (rows 0-1) is 5 patches, 20 % of them: one step of 5.
    best = deletion(model(), IMAGES, PERFECT, target=0, steps=5, fill=0.0, unit="patches:2")
    torch.testing.assert_close(best.curve, torch.tensor([1.0] + [0.0] * 5).expand(3, 6))
    torch.testing.assert_close(best.auc, torch.full((3,), 0.1))
    assert best.choices["unit"] == "patches:2"


def test_label_map_units() -> None:
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[2:6] = 1
    labels[6:] = 2
    best = insertion(model(), IMAGES, PERFECT, target=0, steps=3, fill=0.0, unit=labels)
    torch.testing.assert_close(best.curve, torch.tensor([0.0, 1.0, 1.0, 1.0]).expand(3, 4))
    torch.testing.assert_close(best.auc, torch.full((3,), 5 / 6))


def test_lerf_moves_the_least_relevant_first() -> None:
    lerf = deletion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0, order="lerf")
    morf_of_reversed = deletion(model(), IMAGES, REVERSED, target=0, steps=10, fill=0.0)
    torch.testing.assert_close(lerf.curve, morf_of_reversed.curve)
    torch.testing.assert_close(lerf.auc, torch.full((3,), 0.9))
    assert lerf.higher_is_better and lerf.choices["order"] == "lerf"


def test_deletion_morf_and_insertion_lerf_share_their_images() -> None:
    # The same fill: deletion-MoRF at point k keeps what insertion-LeRF keeps at steps - k.
    deleted = deletion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0)
    inserted = insertion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0, order="lerf")
    torch.testing.assert_close(deleted.curve, inserted.curve.flip(1))


def test_random_order_ignores_the_explanation_and_follows_the_seed() -> None:
    first = deletion(model(), IMAGES, PERFECT, target=0, steps=10, order="random", seed=4)
    reversed_map = deletion(model(), IMAGES, REVERSED, target=0, steps=10, order="random", seed=4)
    other = deletion(model(), IMAGES, PERFECT, target=0, steps=10, order="random", seed=5)
    assert torch.equal(first.curve, reversed_map.curve)
    assert not torch.equal(first.curve, other.curve)
    # each image draws its own order
    assert not torch.equal(first.curve[0], first.curve[1])


def test_region_ties_are_broken_by_the_seed() -> None:
    uniform = torch.zeros(3, 1, 10, 10)
    kwargs: dict[str, Any] = {"target": 0, "steps": 5, "fill": 0.0, "unit": "patches:2"}
    first = deletion(model(), IMAGES, uniform, seed=1, **kwargs)
    again = deletion(model(), IMAGES, uniform, seed=1, **kwargs)
    other = deletion(model(), IMAGES, uniform, seed=3, **kwargs)
    assert torch.equal(first.curve, again.curve)
    assert not torch.equal(first.curve, other.curve)


def test_superpixels_and_bad_order(images: torch.Tensor, tiny_net: nn.Module) -> None:
    net = Model(tiny_net, batch_size=16)
    attributions = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    result = insertion(net, images, attributions, steps=4, unit="slic:8")
    assert result.choices["unit"] == "slic:8" and result.curve.shape == (5, 5)
    with pytest.raises(faithmap.InvalidParameterError, match="'order' parameter of deletion"):
        deletion(net, images, attributions, order="best")  # type: ignore[arg-type]


def test_lerf_reverses_morf_exactly_even_with_ties() -> None:
    weights = torch.rand(1, 10, 10, generator=torch.Generator().manual_seed(0))

    def weighted(x: torch.Tensor) -> torch.Tensor:
        score = (x * weights).flatten(1).sum(1)
        return torch.stack([score, -score], dim=1)

    tied = (PERFECT > 0.5).float()  # 20 tied object pixels, 80 tied background pixels
    kwargs: dict[str, Any] = {
        "target": 0,
        "steps": 20,
        "fill": 0.0,
        "seed": 3,
        "activation": "logits",
    }
    deleted = deletion(Model(weighted), IMAGES, tied, **kwargs)
    inserted = insertion(Model(weighted), IMAGES, tied, order="lerf", **kwargs)
    torch.testing.assert_close(deleted.curve, inserted.curve.flip(1))


def test_signed_maps_move_negative_evidence_last_unless_ranked_by_magnitude() -> None:
    # The object's first row is strongly positive, its second row strongly negative, the
    # background weakly positive. Signed: row 0, then the background, then row 1; absolute:
    # both object rows first. 10 pixels per step, class 0 = the object fraction present.
    signed_map = PERFECT.clone()
    signed_map[..., 1, :] *= -1
    signed = insertion(model(), IMAGES, signed_map, target=0, steps=10, fill=0.0)
    by_size = insertion(
        model(), IMAGES, signed_map, target=0, steps=10, fill=0.0, rank_by="absolute"
    )
    torch.testing.assert_close(signed.curve, torch.tensor([0.0] + [0.5] * 9 + [1.0]).expand(3, 11))
    torch.testing.assert_close(by_size.curve, torch.tensor([0.0, 0.5] + [1.0] * 9).expand(3, 11))
    torch.testing.assert_close(signed.auc, torch.full((3,), 0.5))
    torch.testing.assert_close(by_size.auc, torch.full((3,), 0.9))
    assert signed.choices["rank_by"] == "signed" and by_size.choices["rank_by"] == "absolute"
    # a non-negative map ranks the same either way
    plain = deletion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0)
    same = deletion(model(), IMAGES, PERFECT, target=0, steps=10, fill=0.0, rank_by="absolute")
    assert torch.equal(plain.curve, same.curve)


def test_absolute_ranking_of_regions_and_channels() -> None:
    # three channels summed first: the channel sum's magnitude ranks, per 2x2 patch
    channels = PERFECT.expand(3, 3, 10, 10).clone() / 3
    channels[..., 1, :] *= -1
    kwargs: dict[str, Any] = {"target": 0, "steps": 5, "fill": 0.0, "unit": "patches:2"}
    by_size = deletion(model(), IMAGES, channels, rank_by="absolute", **kwargs)
    torch.testing.assert_close(by_size.curve, torch.tensor([1.0] + [0.0] * 5).expand(3, 6))
    with pytest.raises(faithmap.InvalidParameterError, match="'rank_by' parameter of deletion"):
        deletion(model(), IMAGES, channels, rank_by="abs")  # type: ignore[arg-type]
