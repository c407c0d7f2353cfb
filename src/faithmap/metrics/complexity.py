"""Complexity: how concentrated an explanation is, from the map alone (no model pass).

All three metrics read the magnitudes ``|a|`` of the attribution values as given (an
``(N, 1, H, W)`` map has one value per pixel; a raw ``(N, C, H, W)`` tensor one per channel
value), flattened per sample. They depend on the map's resolution: compare methods at the same
resolution (an upsampled Grad-CAM is artificially smooth).

References
----------
Chalasani, Chen, Chowdhury, Wu, Jha, "Concise Explanations of Neural Networks using
Adversarial Training", ICML 2020 (sparseness, the Gini index).
Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020
(complexity, the entropy).
Nguyen, Martínez, "On Quantitative Aspects of Model Interpretability", 2020 (effective
complexity).
"""

from __future__ import annotations

import torch
from torch import Tensor

from faithmap.core.constraints import Interval
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation, attribution_map
from faithmap.core.metric import MetricResult
from faithmap.core.registry import register_metric

_ZERO_MAP = "nan"
"""What an all-zero map scores on sparseness and complexity: undefined, NaN."""


def _magnitudes(explanation: object) -> Tensor:
    """``|a|`` flattened per sample, ``(N, P)``."""
    return attribution_map(explanation).detach().flatten(1).abs().float()


def _result(metric: str, values: Tensor, higher_is_better: bool, **choices: object) -> MetricResult:
    return MetricResult(
        metric=metric,
        values=values,
        higher_is_better=higher_is_better,
        choices={"values": "absolute", **choices},
        cost=Cost(),
    )


@register_metric(
    "sparseness",
    higher_is_better=True,
)
def sparseness(explanation: Explanation | Tensor) -> MetricResult:
    """Sparseness: the Gini index of ``|a|`` (1 - 1/n for a single pixel, 0 for a flat map).

    ``G = sum_i (2 i - n - 1) a_(i) / (n sum_i a_i)`` with ``a_(1) <= ... <= a_(n)`` sorted
    ascending. Higher is better (a more concentrated map). No epsilon is added (Quantus adds
    1e-7 to every value); an all-zero map is NaN.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, ...)``.

    References
    ----------
    Chalasani et al., "Concise Explanations of Neural Networks using Adversarial Training",
    ICML 2020.

    Examples
    --------
    >>> import torch
    >>> sparseness(torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, 1.0, 1.0, 1.0]])).values
    tensor([0.7500, 0.0000])
    """
    values = _magnitudes(explanation)
    n = values.shape[1]
    ascending = values.sort(dim=1).values
    weights = 2 * torch.arange(1, n + 1, device=values.device, dtype=values.dtype) - n - 1
    total = ascending.sum(1)
    gini = (ascending * weights).sum(1) / (n * total)
    gini = gini.masked_fill(total == 0, float("nan"))
    return _result("sparseness", gini, True, zero_map=_ZERO_MAP)


@register_metric(
    "complexity",
    higher_is_better=False,
)
def complexity(explanation: Explanation | Tensor) -> MetricResult:
    """Complexity: the entropy of the normalised magnitudes ``p = |a| / sum |a|``.

    ``H = -sum_i p_i log p_i`` (natural log, ``0 log 0 = 0``): 0 for a single pixel,
    ``log n`` for a flat map. Lower is better. No epsilon is added (Quantus adds 1e-12 in the
    log); an all-zero map is NaN.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, ...)``.

    References
    ----------
    Bhatt, Weller, Moura, "Evaluating and Aggregating Feature-based Model Explanations",
    IJCAI 2020.

    Examples
    --------
    >>> import torch
    >>> complexity(torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, 1.0, 1.0, 1.0]])).values
    tensor([0.0000, 1.3863])
    """
    values = _magnitudes(explanation)
    total = values.sum(1, keepdim=True)
    p = values / total
    entropy = torch.xlogy(p, p.reciprocal()).sum(1)
    entropy = entropy.masked_fill(total[:, 0] == 0, float("nan"))
    return _result("complexity", entropy, False, log="natural", zero_map=_ZERO_MAP)


@register_metric(
    "effective_complexity",
    constraints={"eps": [Interval(float, 0.0)]},
    higher_is_better=False,
)
def effective_complexity(explanation: Explanation | Tensor, *, eps: float = 1e-5) -> MetricResult:
    """Effective complexity: the number of values with ``|a| > eps``. Lower is better.

    Parameters
    ----------
    explanation : Explanation or Tensor
        Attributions ``(N, ...)``, in the method's raw units (``eps`` is absolute).
    eps : float, default=1e-5
        The threshold (Quantus' default).

    References
    ----------
    Nguyen, Martínez, "On Quantitative Aspects of Model Interpretability", 2020.

    Examples
    --------
    >>> import torch
    >>> effective_complexity(torch.tensor([[0.0, 1e-6, -0.5, 2.0]])).values
    tensor([2.])
    """
    threshold = float(eps)
    count = (_magnitudes(explanation) > threshold).sum(1).float()
    return _result("effective_complexity", count, False, eps=threshold)
