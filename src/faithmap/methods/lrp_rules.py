"""Layer-wise relevance propagation rules, written as modified gradients, and batch-norm folding.

LRP hands the relevance ``R_k`` of a layer's outputs down to its inputs ``a_j`` in proportion
to their contributions (Montavon et al. 2019, eq. 2 to 5). If every tensor's relevance is its
value times a gradient-like signal, ``R = z * g``, each rule becomes a gradient: with ``rho``
the rule's weight modification and ``z'`` the output it gives,

    g_j = sum_k rho(w_jk) * z_k * g_k / stab(z'_k),        R_j = a_j * g_j.

Parameter-free operations keep their true gradient, and that is exact LRP for the ones this
module is used with: ReLU and max pooling pass relevance to the active units, while sums,
means and reshapes split it in proportion to their inputs (the LRP-0 rule).

A rule here maps the incoming signal ``g`` of one affine layer (:class:`Affine`) to the signal
``g_j`` of its input. Batch normalisation is first folded into the layer before it
(:func:`fold_batch_norm`), so the rule sees one affine map, as LRP prescribes.

References
----------
Bach, Binder, Montavon, Klauschen, Müller, Samek, "On Pixel-Wise Explanations for Non-Linear
Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015.

Montavon, Binder, Lapuschkin, Samek, Müller, "Layer-Wise Relevance Propagation: An Overview",
in Explainable AI: Interpreting, Explaining and Visualizing Deep Learning, Springer 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.errors import ModelError


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = 1``: a denominator kept away from zero."""
    return torch.where(z >= 0, z + epsilon, z - epsilon)


def fold_batch_norm(
    weight: Tensor, bias: Tensor | None, norm: nn.BatchNorm1d | nn.BatchNorm2d
) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``norm(layer(a))`` as one layer, for a layer with ``weight, bias``.

    Batch normalisation in eval mode is ``(x - mean) * s + beta`` with
    ``s = gamma / sqrt(var + eps)``, so it folds into the preceding layer as
    ``w' = w * s`` (per output channel) and ``b' = (b - mean) * s + beta``.

    Parameters
    ----------
    weight : Tensor
        The weight of a ``Conv2d`` ``(C_out, ...)`` or ``Linear`` ``(C_out, C_in)``.
    bias : Tensor or None
        Its bias ``(C_out,)``, or ``None``.
    norm : nn.BatchNorm1d or nn.BatchNorm2d
        The normalisation applied to the layer's output; it must use running statistics.

    Returns
    -------
    tuple of Tensor
        The folded weight and bias.

    Raises
    ------
    ModelError
        If ``norm`` has no running statistics or its size differs from the layer's outputs.

    References
    ----------
    Montavon et al., "Layer-Wise Relevance Propagation: An Overview", Springer 2019, sec. 10.3.

    Examples
    --------
    >>> conv, norm = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4).eval()
    >>> weight, bias = fold_batch_norm(conv.weight, conv.bias, norm)
    >>> x = torch.rand(1, 3, 8, 8)
    >>> bool(torch.allclose(norm(conv(x)), F.conv2d(x, weight, bias), atol=1e-6))
    True
    """
    mean, var = norm.running_mean, norm.running_var
    if mean is None or var is None:
        raise ModelError(
            f"LRP folds batch normalisation into the layer before it, which needs running "
            f"statistics; this {type(norm).__name__} was built with "
            "track_running_stats=False. Use a model with running statistics."
        )
    if mean.shape[0] != weight.shape[0]:
        raise ModelError(
            f"A {type(norm).__name__} of {mean.shape[0]} features follows a layer with "
            f"{weight.shape[0]} outputs; LRP can only fold it into a layer of the same size."
        )
    scale = torch.rsqrt(var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    folded_bias = -mean * scale if bias is None else (bias - mean) * scale
    if norm.bias is not None:
        folded_bias = folded_bias + norm.bias
    return weight * scale.view(-1, *[1] * (weight.dim() - 1)), folded_bias


@dataclass(frozen=True, eq=False)
class Affine:
    """One affine layer of a forward pass, as a rule sees it.

    Parameters
    ----------
    module : nn.Module
        A ``Conv2d``, ``Linear``, ``AvgPool2d`` or ``AdaptiveAvgPool2d``.
    weight, bias : Tensor or None
        The layer's parameters with any batch normalisation folded in; ``None`` for pooling.
    inputs : Tensor
        The layer's input ``a`` in the forward pass.
    outputs : Tensor
        Its output ``z`` (after folded normalisation), still attached to ``inputs`` in the
        autograd graph, so the layer's own gradient needs no second forward pass.
    """

    module: nn.Module
    weight: Tensor | None
    bias: Tensor | None
    inputs: Tensor
    outputs: Tensor

    def apply(self, inputs: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The layer's map on ``inputs`` with modified ``weight`` and ``bias``.

        Under a bf16/fp16 autocast the recorded inputs are half precision while the parameters
        are fp32: both are computed in the wider type (rules run outside the autocast)."""
        dtype = torch.promote_types(inputs.dtype, weight.dtype)
        inputs, weight = inputs.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        if isinstance(self.module, nn.Conv2d):
            convolved: Tensor = self.module._conv_forward(inputs, weight, bias)
            return convolved
        return F.linear(inputs, weight, bias)

    def pullback(self, signal: Tensor) -> Tensor:
        """The signal ``signal`` at the outputs taken back through the unmodified layer."""
        (gradient,) = torch.autograd.grad(self.outputs, self.inputs, signal, retain_graph=True)
        return gradient

    def parameters(self, owner: str) -> tuple[Tensor, Tensor | None]:
        """Weight and bias; an error for pooling, which has no weights to modify."""
        if self.weight is None:
            raise ModelError(
                f"The {owner} rule modifies weights, and {type(self.module).__name__} has "
                "none; give pooling layers the 'epsilon' or 'basic' rule."
            )
        return self.weight, self.bias


class Rule(Protocol):
    """Maps the signal at an affine layer's outputs to the signal at its inputs."""

    def gradient(self, layer: Affine, signal: Tensor) -> Tensor:
        """``g_j`` of the layer's inputs given ``g_k`` of its outputs."""
        ...


@dataclass(frozen=True)
class Epsilon:
    """LRP-epsilon: ``R_j = sum_k a_j w_jk / (z_k + epsilon sign(z_k)) R_k``.

    The stabiliser absorbs some relevance, more where ``z_k`` is small; the bias absorbs its
    share too. With ``epsilon -> 0`` this is the LRP-0 rule, the plain gradient.

    References
    ----------
    Bach et al., PLoS ONE 2015, eq. 58; Montavon et al. 2019, eq. 3.
    """

    epsilon: float

    def gradient(self, layer: Affine, signal: Tensor) -> Tensor:
        """``g_j = sum_k w_jk z_k g_k / stab(z_k)``."""
        outputs = layer.outputs.detach()
        return layer.pullback(signal * outputs / stabilize(outputs, self.epsilon))


@dataclass(frozen=True)
class Gamma:
    """LRP-gamma: weights ``w + gamma w^+`` (and bias ``b + gamma b^+``) favour positive parts.

    ``R_j = sum_k a_j (w_jk + gamma w_jk^+) / stab(sum_j a_j (w_jk + gamma w_jk^+)) R_k``;
    meant for non-negative inputs (after a ReLU). ``epsilon`` only keeps the denominator
    away from zero.

    References
    ----------
    Montavon et al. 2019, eq. 4.
    """

    gamma: float
    epsilon: float

    def gradient(self, layer: Affine, signal: Tensor) -> Tensor:
        """``g_j = sum_k rho(w_jk) z_k g_k / stab(z'_k)`` with ``rho(w) = w + gamma w^+``."""
        weight, bias = layer.parameters("gamma")
        weight = weight + self.gamma * weight.clamp(min=0)
        if bias is not None:
            bias = bias + self.gamma * bias.clamp(min=0)
        inputs = layer.inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            modified = layer.apply(inputs, weight, bias)
        scaled = signal * layer.outputs.detach() / stabilize(modified.detach(), self.epsilon)
        (gradient,) = torch.autograd.grad(modified, inputs, scaled)
        return gradient


@dataclass(frozen=True)
class AlphaBeta:
    """LRP-alpha-beta: positive and negative contributions ``a_j w_jk`` handed down apart.

    ``R_j = sum_k (alpha (a_j w_jk)^+ / z^+_k - beta (a_j w_jk)^- / z^-_k) R_k`` with
    ``z^+_k = sum_j (a_j w_jk)^+`` and ``z^-_k = sum_j (a_j w_jk)^-``; ``alpha - beta = 1``
    keeps the total. Contributions are split by the sign of the product, so inputs of either
    sign are handled; the bias is not a contribution. ``alpha=1, beta=0`` is the z+ rule.

    References
    ----------
    Bach et al., PLoS ONE 2015, eq. 60; Montavon et al. 2019, sec. 10.2.1 (z+).
    """

    alpha: float
    beta: float
    epsilon: float

    def gradient(self, layer: Affine, signal: Tensor) -> Tensor:
        """``g_j`` of the positive part minus that of the negative part, by the sign of ``a_j``."""
        weight, _ = layer.parameters("alpha-beta")
        positive_w, negative_w = weight.clamp(min=0), weight.clamp(max=0)
        data = layer.inputs.detach()
        # Inputs after a ReLU are non-negative: then a- = 0 and half the work is skipped.
        parts = [data.clamp(min=0).requires_grad_(True)]
        if bool((data < 0).any()):
            parts.append(data.clamp(max=0).requires_grad_(True))
        relevance = signal * layer.outputs.detach()
        with torch.enable_grad():
            # Positive contributions: a+ w+ and a- w-; negative ones: a+ w- and a- w+.
            outputs = [self._total(layer, parts, positive_w, negative_w)]
            signals = [self.alpha * relevance]
            if self.beta:
                outputs.append(self._total(layer, parts, negative_w, positive_w))
                signals.append(-self.beta * relevance)
        signals = [
            s / stabilize(z.detach(), self.epsilon) for s, z in zip(signals, outputs, strict=True)
        ]
        through = torch.autograd.grad(outputs, parts, signals)
        return through[0] if len(through) == 1 else torch.where(data >= 0, through[0], through[1])

    @staticmethod
    def _total(
        layer: Affine, parts: list[Tensor], for_positive: Tensor, for_negative: Tensor
    ) -> Tensor:
        """``a+ * for_positive + a- * for_negative`` through the layer's map (no bias)."""
        total = layer.apply(parts[0], for_positive, None)
        if len(parts) > 1:
            total = total + layer.apply(parts[1], for_negative, None)
        return total
