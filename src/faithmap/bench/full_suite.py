"""The ``full`` suite: every image classifier method of every family, as the default once was.

``faithmap bench --suite full`` runs :data:`~faithmap.bench.defaults.FULL_METHODS` (27 methods)
with :data:`~faithmap.bench.defaults.FULL_METHOD_PARAMS` on the built-in models and data, with the
default suite's metrics: 9 min 04 s on two idle cores; the default suite runs one or two
methods per family.

References
----------
Petsiuk, Das and Saenko, BMVC 2018 (insertion, deletion); Zhang et al. 2016, Wang et al. 2020,
Arras et al. 2022 (pointing game, energy, relevance mass).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from faithmap.bench.defaults import FULL_METHOD_PARAMS, FULL_METHODS, LOCALISATION_PARAMS
from faithmap.bench.report.palette import METHOD_FAMILIES
from faithmap.zoo import BUILTIN_MODELS

SUITE_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "name": "full",
        "reference": "Petsiuk, Das and Saenko, BMVC 2018 (insertion, deletion); Zhang et al. "
        "2016, Wang et al. 2020, Arras et al. 2022 (pointing game, energy, relevance mass)",
        "models": BUILTIN_MODELS,
        "families": MappingProxyType({name: METHOD_FAMILIES[name] for name in FULL_METHODS}),
        "metrics": ("insertion", "deletion"),
        "mask_metrics": ("pointing_game", "energy_pointing_game", "relevance_mass_accuracy"),
        "method_params": FULL_METHOD_PARAMS,
        "metric_params": LOCALISATION_PARAMS,
        "batch_size": None,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them)."""
