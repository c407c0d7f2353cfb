"""PGD attacks and adversarial training (faithmap.zoo.adversarial)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faithmap.data import make_shapes
from faithmap.errors import InvalidParameterError
from faithmap.zoo import load_builtin
from faithmap.zoo.adversarial import fit_adversarial
from faithmap.zoo.pgd import pgd_attack, robust_accuracy


def _linear(d: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, 2)


def _points(n: int, d: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, d, generator=gen), torch.randint(0, 2, (n,), generator=gen)


def test_linf_attack_reaches_the_optimal_corner() -> None:
    # For a two-class linear model the cross-entropy gradient w.r.t. x has the constant sign of
    # w_other - w_label, so the L-inf optimum is x + eps * sign(w_other - w_label); PGD's
    # steps total 2.5 eps, enough to reach that corner from any start in the box.
    model, (x, y) = _linear(8), _points(6, 8)
    eps = 0.05
    w = model.weight.detach()
    direction = torch.sign(w[1 - y] - w[y])
    adversarial = pgd_attack(model, x, y, norm="linf", epsilon=eps, steps=5)
    torch.testing.assert_close(adversarial, x + eps * direction)


def test_l2_attack_reaches_the_optimal_point() -> None:
    # The L2 optimum of the same linear model is x + eps * unit(w_other - w_label).
    model, (x, y) = _linear(8), _points(6, 8)
    eps = 0.1
    w = model.weight.detach()
    optimum = F.normalize(w[1 - y] - w[y], dim=1)
    # Long steps: each projection shrinks the part orthogonal to the optimum about tenfold.
    delta = pgd_attack(model, x, y, norm="l2", epsilon=eps, steps=6, step_size=10 * eps) - x
    torch.testing.assert_close(delta, eps * optimum)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_attack_stays_in_ball_and_image_and_leaves_model_alone(norm: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(3))
    images = torch.rand(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0])
    model(images)  # materialise the lazy layer
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adversarial = pgd_attack(model, images, labels, norm=norm, epsilon=0.2, steps=3, seed=3)
    delta = (adversarial - images).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert (size <= 0.2 + 1e-6).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():  # BatchNorm statistics untouched
        torch.testing.assert_close(value, before[key])
    again = pgd_attack(model, images, labels, norm=norm, epsilon=0.2, steps=3, seed=3)
    torch.testing.assert_close(again, adversarial)


def _robust_feature_data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tsipras et al. (2019): one robust feature right with prob. 0.95, d weak Gaussian ones."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    sign = 2.0 * y - 1.0
    flip = torch.where(torch.rand(n, generator=gen) < 0.95, 1.0, -1.0)
    robust = (sign * flip)[:, None]
    eta = 2.0 / d**0.5
    weak = eta * sign[:, None] + torch.randn(n, d, generator=gen)
    return 0.5 + 0.05 * torch.cat([robust, weak], dim=1), y


def test_adversarial_training_raises_robust_accuracy() -> None:
    # The weak features are jointly predictive (Bayes accuracy about 0.99), but an L-inf shift
    # of 2 * 0.05 * eta flips their means; only the robust feature survives it (accuracy 0.95).
    d = 100
    eps = 2 * 0.05 * 2.0 / d**0.5
    x, y = _robust_feature_data(2000, d, seed=0)
    x_test, y_test = _robust_feature_data(1000, d, seed=1)
    vanilla, robust = _linear(d + 1), _linear(d + 1)
    optimiser = torch.optim.Adam(vanilla.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        torch.autograd.backward(F.cross_entropy(vanilla(x), y))
        optimiser.step()
    torch.manual_seed(0)
    fit_adversarial(robust, x, y, norm="linf", epsilon=eps, steps=3, epochs=8, lr=0.05)
    attack = {"norm": "linf", "epsilon": eps, "steps": 10}
    assert (vanilla(x_test).argmax(1) == y_test).double().mean() > 0.9
    assert robust_accuracy(vanilla, x_test, y_test, **attack) < 0.3
    assert robust_accuracy(robust, x_test, y_test, **attack) > 0.85


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_shipped_robust_models_are_accurate_and_more_robust(name: str) -> None:
    from faithmap.zoo import load_builtin

    data = make_shapes(100, seed=7919)
    robust, vanilla = load_builtin(f"{name}_robust"), load_builtin(name)
    assert (robust(data.images).argmax(1) == data.labels).double().mean() > 0.8
    # Within the training radius (1.25 for the CNN, 2.5 for the ResNet) the robust model keeps
    # many more images than the vanilla one.
    attack: dict[str, Any] = {"norm": "l2", "epsilon": 0.75, "steps": 3}
    gain = robust_accuracy(robust, data.images, data.labels, **attack) - robust_accuracy(
        vanilla, data.images, data.labels, **attack
    )
    assert gain > 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "l1"}, "'norm' parameter of pgd_attack"),
        ({"epsilon": 0.0}, "'epsilon' parameter of pgd_attack"),
        ({"steps": 0}, "'steps' parameter of pgd_attack"),
    ],
)
def test_bad_attack_parameters(kwargs: dict[str, object], message: str) -> None:
    model, (x, y) = _linear(4), _points(2, 4)
    with pytest.raises(InvalidParameterError, match=message):
        pgd_attack(model, x, y, **kwargs)  # type: ignore[arg-type]


def test_robust_models_load_by_name() -> None:
    assert isinstance(load_builtin("cnn_robust"), nn.Module)
    with pytest.raises(InvalidParameterError, match="'name' parameter must be one of"):
        load_builtin("vit_robust")
