"""faithmap's engine: what every method and metric is built on.

``faithmap.core`` imports nothing from faithmap but itself and :mod:`faithmap.errors` (a CI
contract checks it): the model (:mod:`~faithmap.core.model`), what it expects and returns
(:mod:`~faithmap.core.preprocessing`, :mod:`~faithmap.core.readout`), batching, targets, regions,
removal, explanation, cost, validation and parameter constraints, ONNX sessions, the
:class:`~faithmap.core.method.Method` base, the metric template (:mod:`~faithmap.core.metric`)
and the registries of both (:mod:`~faithmap.core.registry`). Methods, metrics, the API, the
benchmark and the command line are built on top of it.
"""

from faithmap.core.constraints import InstanceOf, Interval, Options, Satisfies
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.method import Attribution, Method
from faithmap.core.metric import MetricResult, MetricSpec, prepare
from faithmap.core.model import Model, ModelLike
from faithmap.core.regions import Regions, make_regions
from faithmap.core.registry import METHODS, METRICS, register_method, register_metric
from faithmap.core.removal import Removal

__all__ = [
    "METHODS",
    "METRICS",
    "Attribution",
    "Cost",
    "Explanation",
    "InstanceOf",
    "Interval",
    "Method",
    "MetricResult",
    "MetricSpec",
    "Model",
    "ModelLike",
    "Options",
    "Regions",
    "Removal",
    "Satisfies",
    "make_regions",
    "prepare",
    "register_method",
    "register_metric",
]
