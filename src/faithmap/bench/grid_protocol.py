"""The grid suite's protocol: what ``faithmap bench --suite grid`` measures, and its tasks.

The methods and their parameters (:data:`GRID_METHODS`), ML-Att's layers of the built-in CNN
(:data:`LAYERS`), the fields of the suite's :class:`~faithmap.bench.suites.Suite`
(:data:`SUITE_FIELDS`), a run's configuration (:class:`GridConfig`, whose hash names the run in
the store) and its tasks, one per setting and ``method@layer`` (:func:`plan_grid`). The suite
itself runs in :mod:`faithmap.bench.grid_suite`.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from faithmap.bench.grid_findings import GRADIENT
from faithmap.bench.plan import Task
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError
from faithmap.zoo.grid_models import GRID_SETTINGS

GRID_DATA: Final = "grid"
"""The ``data`` of the grid :class:`~faithmap.bench.suites.Suite`: the CLI runs
:mod:`faithmap.bench.grid_suite`."""

GRID_METHODS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "saliency": {},
        "input_x_gradient": {},
        "integrated_gradients": {"steps": 16},
        "grad_cam": {"layer": "features"},
        # A large window, half a 64 px cell (the paper's large one is 16 px, stride 8, on
        # 224 px cells): windows at 48 and 64 px straddle the border between cells.
        "occlusion": {"window": 32, "stride": 16},
        "rise": {"n_masks": 200},
    }
)
"""The methods and their parameters (the rest at their defaults)."""

LAYERS: Final[Mapping[str, str | None]] = MappingProxyType(
    {"input": None, "middle": "block2", "final": "features"}
)
"""ML-Att's layers of the built-in CNN: the input, the second block, the last block."""

_FAMILIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "saliency": "gradient",
        "input_x_gradient": "gradient",
        "integrated_gradients": "gradient",
        "grad_cam": "cam",
        "occlusion": "perturbation",
        "rise": "perturbation",
    }
)

SUITE_FIELDS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "name": "grid",
        "reference": (
            'Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", '
            "CVPR 2022 (grid pointing game, DiFull, DiPart, ML-Att, AggAtt)"
        ),
        "models": ("cnn",),
        "families": _FAMILIES,
        "metrics": ("grid_pointing_game",),
        "method_params": GRID_METHODS,
        "n_samples": 8,
        "data_seed": 1,
        "data": GRID_DATA,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them); ``n_samples``
counts grids."""


def _jobs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """``(method, layer)`` pairs: every method at the input, ML-Att layers where they apply."""
    jobs = [(method, "input") for method in methods if method != "grad_cam"]
    for layer in ("middle", "final"):
        jobs += [(method, layer) for method in methods if method in GRADIENT]
        jobs += [("grad_cam", layer)] if "grad_cam" in methods else []
    return jobs


@dataclass(frozen=True)
class GridConfig:
    """What a grid run measures; :meth:`identity` names the run in the store.

    ``n_grids`` grids of seed ``seed`` (also RISE's), the built-in ``arch``, ``methods`` among
    :data:`GRID_METHODS`; ``out`` (the store's folder) is not part of the identity.
    """

    n_grids: int = 8
    arch: str = "cnn"
    seed: int = 1
    methods: tuple[str, ...] = tuple(GRID_METHODS)
    out: Path = Path("faithmap-bench")

    def __post_init__(self) -> None:
        check_int(self.n_grids, "n_grids", "run_grid", low=1)
        check_int(self.seed, "seed", "run_grid", low=0)
        unknown = [method for method in self.methods if method not in GRID_METHODS]
        if unknown or not self.methods:
            raise InvalidParameterError(
                f"The grid suite runs methods among {', '.join(GRID_METHODS)}. Got "
                f"{', '.join(map(repr, unknown)) or 'none'}."
            )

    def identity(self) -> dict[str, Any]:
        """What decides the numbers (everything but ``out``), as JSON-ready values."""
        return {
            "protocol": "grid",
            "n_grids": self.n_grids,
            "arch": self.arch,
            "seed": self.seed,
            "methods": {m: dict(GRID_METHODS[m]) for m in self.methods},
            "layers": dict(LAYERS),
            "settings": list(GRID_SETTINGS),
        }

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit hash of :meth:`identity`: the run's name in the store."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_grid(config: GridConfig, n_maps: int) -> list[Task]:
    """One task per setting and ``method@layer``, each explaining all ``n_maps`` cells."""
    return [
        Task(setting, f"{method}@{layer}", dict(GRID_METHODS[method]), 0, n_maps)
        for setting in GRID_SETTINGS
        for method, layer in _jobs(config.methods)
    ]
