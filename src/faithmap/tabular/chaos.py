"""A ChaosMining-style symbolic regression set with analytic ground-truth attributions.

Each formula depends on its first ``k`` columns; the other columns are distractors the target
never reads. For every sample three ground truths are exact functions of the formula:

- ``derivative``: ``df/dx_i`` at the sample (what a gradient should show);
- ``ablation``: ``f(x) - f(x with x_i = 0)`` (what removing a column to 0 should show);
- ``path_sum``: ``sum_{t<n} f(x t/n + e_i x_i / n) - f(x t/n)``, the discretised
  integrated-gradients path from the zero baseline, ``n = steps`` (the reference's IG truth).

Distractor columns have zero ground truth everywhere. For an additive formula all three of
``ablation``, ``path_sum`` and the exact Shapley values with a zero baseline coincide.

References
----------
Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local Attribution
Methods in Low SNR Environments", arXiv 2406.12150, 2024.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from faithmap.core.validation import check_float, check_int
from faithmap.errors import InvalidParameterError

VARIABLES = "abcdefghij"


@dataclass(frozen=True)
class Formula:
    """A target function of the first ``variables`` columns.

    Attributes
    ----------
    expression : str
        The formula in the variables ``a, b, c, ...`` (for display).
    variables : int
        How many leading columns it reads.
    function : callable
        Maps ``(N, variables)`` to ``(N,)``, row by row, differentiable in torch.
    additive : bool
        Whether ``f`` is a sum of functions of one variable each.
    """

    expression: str
    variables: int
    function: Callable[[Tensor], Tensor]
    additive: bool

    def __call__(self, columns: Tensor) -> Tensor:
        return self.function(columns)


def _square_plus_one(v: Tensor) -> Tensor:
    """``v**2 + 1``, the denominator and log argument the formulas share."""
    return v**2 + 1


FORMULAS: tuple[Formula, ...] = (
    Formula("a", 1, lambda v: v[:, 0], True),
    Formula("a**2", 1, lambda v: v[:, 0] ** 2, True),
    Formula("1/(a**2+1)", 1, lambda v: 1 / _square_plus_one(v[:, 0]), True),
    Formula("sin(a)", 1, lambda v: torch.sin(v[:, 0]), True),
    Formula("exp(a)", 1, lambda v: torch.exp(v[:, 0]), True),
    Formula("log(a**2+1)", 1, lambda v: torch.log(_square_plus_one(v[:, 0])), True),
    Formula(
        "0.25*a**3+0.75*b**2-1", 2, lambda v: 0.25 * v[:, 0] ** 3 + 0.75 * v[:, 1] ** 2 - 1, True
    ),
    Formula(
        "0.5*a**3+1.5*b**2+2*a*c-2",
        3,
        lambda v: 0.5 * v[:, 0] ** 3 + 1.5 * v[:, 1] ** 2 + 2 * v[:, 0] * v[:, 2] - 2,
        False,
    ),
    Formula(
        "exp(a)*sin(b)-cos(d)**3/(c**2+1)",
        4,
        lambda v: (
            torch.exp(v[:, 0]) * torch.sin(v[:, 1])
            - torch.cos(v[:, 3]) ** 3 / _square_plus_one(v[:, 2])
        ),
        False,
    ),
    Formula(
        "(a-b)**2+0.2*(c+d*e)**3-1",
        5,
        lambda v: (v[:, 0] - v[:, 1]) ** 2 + 0.2 * (v[:, 2] + v[:, 3] * v[:, 4]) ** 3 - 1,
        False,
    ),
    Formula(
        "cos(a)*tan(b)-log((c-d)**2+1)/((e+f+1)**2+1)",
        6,
        lambda v: (
            torch.cos(v[:, 0]) * torch.tan(v[:, 1])
            - torch.log(_square_plus_one(v[:, 2] - v[:, 3]))
            / _square_plus_one(v[:, 4] + v[:, 5] + 1)
        ),
        False,
    ),
    Formula(
        "(b-c)**2/(a**2+1)+tan(d)*log(e**2+1)+cos(f)*sin(g)-2",
        7,
        lambda v: (
            (v[:, 1] - v[:, 2]) ** 2 / _square_plus_one(v[:, 0])
            + torch.tan(v[:, 3]) * torch.log(_square_plus_one(v[:, 4]))
            + torch.cos(v[:, 5]) * torch.sin(v[:, 6])
            - 2
        ),
        False,
    ),
    Formula(
        "a+b**2/2+c**3/3+d**4/4+e**5/5+f**6/6+g**7/7+h**8/8-2",
        8,
        lambda v: (
            (v ** torch.arange(1, 9, device=v.device) / torch.arange(1, 9, device=v.device))
            .sum(1)
            .sub(2)
        ),
        True,
    ),
    Formula(
        "(a-1)/(b**2+1)-c**3/(d**2+1)+e**5/(f**2+1)-g**7/(h**2+1)-tan(i)",
        9,
        lambda v: (
            (v[:, 0] - 1) / _square_plus_one(v[:, 1])
            - v[:, 2] ** 3 / _square_plus_one(v[:, 3])
            + v[:, 4] ** 5 / _square_plus_one(v[:, 5])
            - v[:, 6] ** 7 / _square_plus_one(v[:, 7])
            - torch.tan(v[:, 8])
        ),
        False,
    ),
    Formula(
        "sin(a)-0.5*b**3-log(c**2+1)+sqrt((d+e)**2+1)-cos(f)*g+h*i**2/((1-j)**2+1)",
        10,
        lambda v: (
            torch.sin(v[:, 0])
            - 0.5 * v[:, 1] ** 3
            - torch.log(_square_plus_one(v[:, 2]))
            + torch.sqrt(_square_plus_one(v[:, 3] + v[:, 4]))
            - torch.cos(v[:, 5]) * v[:, 6]
            + v[:, 7] * v[:, 8] ** 2 / _square_plus_one(1 - v[:, 9])
        ),
        False,
    ),
)
"""The 15 symbolic formulas of ChaosMining's regression benchmark (1 to 10 relevant variables).

Two differ from the reference's ``formula.csv``: its 8-variable formula has ``f**6/6`` and
``f**7/7`` and so never reads ``h`` (here the terms run over ``a`` to ``h``, each variable once),
and its ``cot(i + pi/2)`` is written ``-tan(i)``, the same function.
"""


class FormulaModel(nn.Module):
    """The formula itself as a regression model over all columns, output ``(N, 1)``.

    A perfect model of the noise-free target: its attributions can be checked against the
    analytic ground truth exactly.
    """

    def __init__(self, formula: Formula) -> None:
        super().__init__()
        self.formula = formula

    def forward(self, inputs: Tensor) -> Tensor:
        return self.formula(inputs[:, : self.formula.variables]).unsqueeze(1)


@dataclass(frozen=True)
class ChaosSet:
    """Samples of one formula with their analytic ground-truth attributions.

    Attributes
    ----------
    inputs : Tensor
        ``(N, F)`` rows: the formula's ``k`` columns first, then ``F - k`` distractors.
    targets : Tensor
        ``(N,)`` ``f(x)`` plus Gaussian label noise.
    relevant : Tensor
        ``(N, F)`` boolean, true on the formula's columns.
    derivative, ablation, path_sum : Tensor
        ``(N, F)`` ground truths (see the module docstring); zero on distractors.
    formula : Formula
    feature_names : tuple of str
        ``a, b, ...`` for the formula's columns, ``noise0, noise1, ...`` for distractors.
    """

    inputs: Tensor
    targets: Tensor
    relevant: Tensor
    derivative: Tensor
    ablation: Tensor
    path_sum: Tensor
    formula: Formula
    feature_names: tuple[str, ...]

    def model(self) -> FormulaModel:
        """The noise-free formula as a model (the oracle)."""
        return FormulaModel(self.formula)


def chaos_regression(
    formula: int | Formula,
    *,
    n_samples: int = 1000,
    n_noise: int = 100,
    x_std: float = 0.33,
    y_std: float = 0.01,
    steps: int = 20,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> ChaosSet:
    """Draw a ChaosMining-style regression set with exact ground-truth attributions.

    Every column is ``clip(N(0, 1) * x_std, -1, 1)``; the target is ``f`` of the first ``k``
    columns plus ``N(0, 1) * y_std`` noise. Ground truths are computed in float64.

    Parameters
    ----------
    formula : int or Formula
        An index into :data:`FORMULAS` or a formula of your own.
    n_samples : int, default=1000
    n_noise : int, default=100
        Distractor columns (the reference runs use 100).
    x_std : float, default=0.33
        Scale of the inputs (the reference's ``X_var``, used as a standard deviation).
    y_std : float, default=0.01
        Scale of the label noise.
    steps : int, default=20
        Steps ``n`` of the path-sum ground truth (the reference uses 20).
    seed : int, default=0
    dtype : torch.dtype, default=torch.float32
        The dtype of the returned tensors.

    References
    ----------
    Shi, Kan, Smucny, Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local
    Attribution Methods in Low SNR Environments", arXiv 2406.12150, 2024.

    Examples
    --------
    >>> data = chaos_regression(6, n_samples=4, n_noise=3)
    >>> data.inputs.shape, data.feature_names
    (torch.Size([4, 5]), ('a', 'b', 'noise0', 'noise1', 'noise2'))
    >>> bool((data.ablation[:, 2:] == 0).all())
    True
    """
    if isinstance(formula, bool) or not isinstance(formula, int | Formula):
        raise InvalidParameterError(
            "The 'formula' parameter of chaos_regression must be an index into FORMULAS or a "
            f"Formula. Got {formula!r} instead."
        )
    if isinstance(formula, int):
        check_int(formula, "formula", "chaos_regression", low=0)
        if formula >= len(FORMULAS):
            raise InvalidParameterError(
                f"The 'formula' parameter of chaos_regression must be an index in [0, "
                f"{len(FORMULAS) - 1}]. Got {formula} instead."
            )
        formula = FORMULAS[formula]
    check_int(n_samples, "n_samples", "chaos_regression", low=1)
    check_int(n_noise, "n_noise", "chaos_regression", low=0)
    check_float(x_std, "x_std", "chaos_regression", low=0.0, low_open=True)
    check_float(y_std, "y_std", "chaos_regression", low=0.0)
    check_int(steps, "steps", "chaos_regression", low=1)
    check_int(seed, "seed", "chaos_regression")
    k = formula.variables
    generator = torch.Generator().manual_seed(seed)
    columns = k + n_noise
    inputs = (
        torch.randn(n_samples, columns, generator=generator, dtype=torch.float64) * x_std
    ).clamp(-1, 1)
    noise = torch.randn(n_samples, generator=generator, dtype=torch.float64) * y_std
    relevant = inputs[:, :k]
    truths = [
        _derivative(formula, relevant),
        _ablation(formula, relevant),
        _path_sum(formula, relevant, steps),
    ]
    padded = [torch.cat([t, torch.zeros(n_samples, n_noise, dtype=t.dtype)], 1) for t in truths]
    mask = torch.zeros(n_samples, columns, dtype=torch.bool)
    mask[:, :k] = True
    names = tuple(VARIABLES[i] if i < len(VARIABLES) else f"x{i}" for i in range(k))
    return ChaosSet(
        inputs=inputs.to(dtype),
        targets=(formula(relevant) + noise).to(dtype),
        relevant=mask,
        derivative=padded[0].to(dtype),
        ablation=padded[1].to(dtype),
        path_sum=padded[2].to(dtype),
        formula=formula,
        feature_names=names + tuple(f"noise{i}" for i in range(n_noise)),
    )


def _derivative(formula: Formula, columns: Tensor) -> Tensor:
    """``df/dx_i`` of every row (autograd of the closed form, exact to rounding)."""
    with torch.enable_grad():
        rows = columns.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(formula(rows).sum(), rows)
    return gradient


def _ablation(formula: Formula, columns: Tensor) -> Tensor:
    """``f(x) - f(x with x_i = 0)`` for every row and column."""
    n, k = columns.shape
    zeroed = columns[:, None, :].repeat(1, k, 1)
    zeroed[:, torch.arange(k), torch.arange(k)] = 0.0
    return formula(columns)[:, None] - formula(zeroed.view(n * k, k)).view(n, k)


def _path_sum(formula: Formula, columns: Tensor, steps: int) -> Tensor:
    """``sum_t f(x t/n + e_i x_i / n) - f(x t/n)``: the discrete IG path from zero."""
    n, k = columns.shape
    fractions = torch.arange(steps, dtype=columns.dtype) / steps
    points = columns[:, None, :] * fractions[None, :, None]  # (n, steps, k)
    advanced = points[:, :, None, :].repeat(1, 1, k, 1)  # (n, steps, k, k)
    advanced[:, :, torch.arange(k), torch.arange(k)] += columns[:, None, :] / steps
    base = formula(points.reshape(-1, k)).view(n, steps)
    moved = formula(advanced.reshape(-1, k)).view(n, steps, k)
    return (moved - base[:, :, None]).sum(1)


__all__ = [
    "FORMULAS",
    "ChaosSet",
    "Formula",
    "FormulaModel",
    "chaos_regression",
]
