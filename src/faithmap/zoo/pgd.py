"""Projected gradient descent (PGD) attacks, and accuracy under them.

The attack of Madry et al. (2018): from a random start inside an L2 ball or an L-infinity box of
radius ``epsilon`` around each image, repeated gradient-ascent steps on the cross-entropy loss,
each followed by a projection back into the ball and into ``[0, 1]``. Used by
:mod:`faithmap.zoo.adversarial` to train robust models and to measure their robustness.

References
----------
Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.core.validation import check_choice, check_float, check_int

__all__ = ["NORMS", "check_attack", "pgd_attack", "robust_accuracy"]

NORMS: Final[tuple[str, ...]] = ("l2", "linf")
"""Threat models of :func:`pgd_attack`: an L2 ball or an L-infinity box around each image."""

_TINY: Final = 1e-12


def check_attack(norm: str, epsilon: float, steps: int, owner: str) -> tuple[str, float, int]:
    """Validate an attack's `norm`, `epsilon` (> 0) and `steps` (>= 1) for the function `owner`."""
    norm = check_choice(norm, "norm", owner, NORMS)
    epsilon = check_float(epsilon, "epsilon", owner, low=0.0, low_open=True)
    steps = check_int(steps, "steps", owner, low=1)
    return norm, epsilon, steps


def _per_sample_norm(x: Tensor) -> Tensor:
    """L2 norm of each sample, shaped to broadcast against ``x``."""
    norms: Tensor = x.flatten(1).norm(dim=1).clamp_min(_TINY)
    return norms.view(-1, *([1] * (x.dim() - 1)))


def _project(delta: Tensor, norm: str, epsilon: float) -> Tensor:
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scaled: Tensor = delta * (epsilon / _per_sample_norm(delta)).clamp(max=1.0)
    return scaled


def pgd_attack(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    norm: str = "l2",
    epsilon: float = 1.25,
    steps: int = 3,
    step_size: float | None = None,
    seed: int = 0,
) -> Tensor:
    """Projected gradient ascent on the cross-entropy loss, from a random start in the ball.

    Each step moves the images along the loss gradient (normalised per sample in L2, its sign
    in L-infinity) by `step_size`, then projects back into the ``epsilon`` ball around the
    clean images and into ``[0, 1]``. The model is run in eval mode and given back in the mode
    it had; its parameters' ``.grad`` are left untouched.

    Parameters
    ----------
    model : nn.Module
        A classifier of ``(N, 3, H, W)`` images in ``[0, 1]``.
    images : Tensor
        ``(N, 3, H, W)`` clean images in ``[0, 1]``.
    labels : Tensor
        ``(N,)`` true classes.
    norm : {"l2", "linf"}, default="l2"
        The threat model.
    epsilon : float, default=1.25
        Radius of the ball, > 0.
    steps : int, default=3
        Gradient steps, >= 1.
    step_size : float or None, default=None
        Length of one step; ``None``: ``2.5 * epsilon / steps`` (Madry et al.'s rule).
    seed : int, default=0
        Seed of the random start.

    Returns
    -------
    Tensor
        The adversarial images, detached, same shape and device as `images`.

    Raises
    ------
    InvalidParameterError
        If `norm`, `epsilon`, `steps`, `step_size` or `seed` is out of range.

    References
    ----------
    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018.
    """
    norm, epsilon, steps = check_attack(norm, epsilon, steps, "pgd_attack")
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    alpha = check_float(alpha, "step_size", "pgd_attack", low=0.0, low_open=True)
    check_int(seed, "seed", "pgd_attack", low=0)
    clean = images.detach()
    gen = torch.Generator(device=clean.device).manual_seed(seed)
    noise = torch.rand(clean.shape, generator=gen, device=clean.device, dtype=clean.dtype)
    if norm == "linf":
        delta = (2 * noise - 1) * epsilon
    else:  # a random direction, at a uniform fraction of the radius
        direction = torch.randn(clean.shape, generator=gen, device=clean.device, dtype=clean.dtype)
        radius = epsilon * noise.flatten(1)[:, :1].view(-1, *([1] * (clean.dim() - 1)))
        delta = direction / _per_sample_norm(direction) * radius
    adversarial = (clean + delta).clamp(0.0, 1.0)
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            adversarial.requires_grad_(True)
            loss = F.cross_entropy(model(adversarial), labels)
            (grad,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                move = grad.sign() if norm == "linf" else grad / _per_sample_norm(grad)
                delta = _project(adversarial + alpha * move - clean, norm, epsilon)
                adversarial = (clean + delta).clamp(0.0, 1.0)
    finally:
        model.train(was_training)
    return adversarial.detach()


def robust_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    norm: str = "l2",
    epsilon: float = 1.25,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 250,
) -> float:
    """Accuracy under a :func:`pgd_attack` of each batch of `images`.

    Parameters
    ----------
    model : nn.Module
        A classifier; evaluated in eval mode, given back in the mode it had.
    images, labels : Tensor
        ``(N, 3, H, W)`` images in ``[0, 1]`` and their ``(N,)`` classes.
    norm, epsilon, steps, seed
        The attack (see :func:`pgd_attack`); evaluation uses more steps than training.
    batch_size : int, default=250
        Images attacked at once.

    Returns
    -------
    float
        Fraction of images still classified correctly after the attack, in ``[0, 1]``.

    References
    ----------
    Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018.
    """
    check_int(batch_size, "batch_size", "robust_accuracy", low=1)
    was_training = model.training
    model.eval()
    try:
        correct = 0
        for x, y in zip(
            torch.split(images, batch_size), torch.split(labels, batch_size), strict=True
        ):
            attacked = pgd_attack(model, x, y, norm=norm, epsilon=epsilon, steps=steps, seed=seed)
            with torch.no_grad():
                correct += int((model(attacked).argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(labels)
