"""SAM's sweep: explain the same images under each setting of one hyperparameter, or each seed.

For a method, every hyperparameter of its grid is varied alone around the method's default
(the default first, as SAM compares each variant with it), then the seed alone for a method that
has one; :func:`faithmap.metrics.hyperparameter_sensitivity.map_spread` gives the pairwise and
to-default Spearman and SSIM of the maps of each sweep.

References
----------
Bansal, Agarwal, Nguyen, "SAM: The Sensitivity of Attribution Methods to Hyperparameters",
CVPR 2020 (SmoothGrad sigma 0.1 to 0.3 and sample counts, occlusion patch sizes, LIME seeds 0-4
and sample counts, each against a default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from torch import Tensor, nn

from faithmap.api import get_method
from faithmap.core.model import Model, ModelLike
from faithmap.core.targets import TargetLike
from faithmap.errors import InvalidParameterError
from faithmap.metrics.hyperparameter_sensitivity import SpreadResult, map_spread

__all__ = [
    "DEFAULT_GRIDS",
    "DEFAULT_SEEDS",
    "LAST_CONVOLUTIONS",
    "Sweep",
    "default_grid",
    "sensitivity_sweep",
]

LAST_CONVOLUTIONS: Final = "last 3 convolutions"
"""A grid value for ``layer``: the model's last three ``nn.Conv2d`` (CAM methods)."""

DEFAULT_GRIDS: Final[Mapping[str, Mapping[str, tuple[Any, ...]]]] = {
    "integrated_gradients": {"steps": (8, 16, 32, 64), "baseline": (0.0, "mean", "blur")},
    "smoothgrad": {"stdev": (0.1, 0.15, 0.2, 0.3), "n_samples": (25, 50, 100)},
    "gradient_shap": {"n_samples": (16, 32, 64), "stdev": (0.0, 0.1, 0.2)},
    "occlusion": {"window": (4, 6, 8, 12)},
    "rise": {"grid": (4, 6, 8, 10), "keep_probability": (0.3, 0.5, 0.7)},
    "lime": {"n_samples": (250, 500, 1000)},
    "kernel_shap": {"n_samples": (250, 500, 1000)},
    "grad_cam": {"layer": (LAST_CONVOLUTIONS,)},
}
"""Each method's hyperparameters and the values swept (its default is added when absent)."""

DEFAULT_SEEDS: Final[tuple[int, ...]] = (0, 1, 2, 3, 4)
"""Seeds swept for a method with a ``seed`` (SAM's LIME seeds)."""


@dataclass(frozen=True)
class Sweep:
    """One hyperparameter of one method varied alone, and how much its maps moved.

    Attributes
    ----------
    method : str
        The method's registered name.
    parameter : str
        The hyperparameter varied (``"seed"`` for the seed sweep).
    values : tuple
        Its values, the method's default first.
    spread : SpreadResult
        Pairwise and to-default Spearman and SSIM of the maps, per sample.
    """

    method: str
    parameter: str
    values: tuple[Any, ...]
    spread: SpreadResult


def _convolutions(model: ModelLike, count: int) -> tuple[str, ...]:
    module = model.module if isinstance(model, Model) else model
    if not isinstance(module, nn.Module):
        raise InvalidParameterError(
            "The default 'layer' grid reads the model's convolutions, so it needs an nn.Module. "
            "Got a black box; pass grid={'layer': [...]} or use another method."
        )
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise InvalidParameterError(
            "The model has no nn.Conv2d, so the default 'layer' grid is empty. Pass "
            "grid={'layer': ['<dotted name>', ...]}."
        )
    return tuple(names[-count:])


def default_grid(method: str, model: ModelLike) -> dict[str, tuple[Any, ...]]:
    """The grid :func:`sensitivity_sweep` uses for `method` on `model` when none is given.

    Raises
    ------
    InvalidParameterError
        If `method` has no default grid (the message lists those that do).
    """
    if method not in DEFAULT_GRIDS:
        raise InvalidParameterError(
            f"The method {method!r} has no default hyperparameter grid (those with one: "
            f"{', '.join(DEFAULT_GRIDS)}). Pass grid={{'<parameter>': [values, ...]}}."
        )
    grid: dict[str, tuple[Any, ...]] = {}
    for name, values in DEFAULT_GRIDS[method].items():
        if values == (LAST_CONVOLUTIONS,):
            values = _convolutions(model, 3)
        grid[name] = values
    return grid


def _settings(defaults: Mapping[str, Any], name: str, values: Sequence[Any]) -> tuple[Any, ...]:
    default = defaults[name]
    return (default, *[v for v in values if not (v == default and type(v) is type(default))])


def sensitivity_sweep(
    model: ModelLike,
    inputs: Tensor,
    method: str,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    params: Mapping[str, Any] | None = None,
    target: TargetLike = None,
    similarities: Sequence[str] = ("spearman", "ssim"),
    absolute: bool = False,
) -> list[Sweep]:
    """Explain `inputs` with `method` under each setting of its grid and each seed; compare.

    Parameters
    ----------
    model : Model, nn.Module or callable
    inputs : Tensor
        One batch of images.
    method : str
        A registered method.
    grid : mapping of str to sequence, or None, default=None
        Hyperparameters and the values to sweep, each alone around the default; ``None``:
        :func:`default_grid`. The default value is put first when the grid lacks it.
    seeds : sequence of int, default=(0, 1, 2, 3, 4)
        Seeds swept when the method has a ``seed``; empty to skip.
    params : mapping or None, default=None
        Settings held fixed in every run (they also move the default).
    target : None, int, sequence, tensor or callable
        The class explained; ``None``: each input's predicted class, the same in every run.
    similarities, absolute
        As :func:`~faithmap.metrics.hyperparameter_sensitivity.map_spread`.

    Returns
    -------
    list of Sweep
        One per hyperparameter with at least two values, then one for the seeds.

    Raises
    ------
    InvalidParameterError
        If a grid names a parameter the method lacks, or lists no values.

    References
    ----------
    Bansal, Agarwal, Nguyen, "SAM: The Sensitivity of Attribution Methods to Hyperparameters",
    CVPR 2020.
    """
    fixed = dict(params or {})
    base = get_method(method, **fixed)
    defaults = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    chosen = default_grid(method, model) if grid is None else dict(grid)
    for name, values in chosen.items():
        if name not in defaults or name == "seed":
            raise InvalidParameterError(
                f"The grid of {method} names {name!r}, which is not one of its hyperparameters "
                f"({', '.join(n for n in defaults if n != 'seed')}); seeds go in 'seeds'."
            )
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise InvalidParameterError(
                f"The grid of {method} must map {name!r} to a non-empty list of values. Got "
                f"{values!r} instead."
            )
    sweeps = [(name, _settings(defaults, name, values)) for name, values in chosen.items()]
    if "seed" in defaults and len(seeds) > 0:
        sweeps.append(("seed", _settings(defaults, "seed", list(seeds))))
    results = []
    for name, values in sweeps:
        if len(values) < 2:
            continue
        maps = [
            get_method(method, **{**fixed, name: value}).explain(model, inputs, target)
            for value in values
        ]
        spread = map_spread(
            maps,
            similarities=similarities,
            absolute=absolute,
            labels=[f"{name}={value!r}" for value in values],
        )
        results.append(Sweep(method=method, parameter=name, values=values, spread=spread))
    return results
