"""Metrics of explanation quality: plain functions returning frozen results.

Every metric returns a :class:`MetricResult` (one value per sample, the mean, the cost in
passes and the choices made) and is registered by name in :data:`METRICS`; importing this
package registers them all.
"""

from faithmap.core.metric import MetricResult, MetricSpec
from faithmap.core.registry import METRICS, register_metric
from faithmap.metrics.complexity import complexity, effective_complexity, sparseness
from faithmap.metrics.confidence import ConfidenceResult, highest_confidence
from faithmap.metrics.curves import CurveResult, deletion, insertion, trapezoid_auc
from faithmap.metrics.fidelity import faithfulness_correlation, faithfulness_estimate
from faithmap.metrics.infidelity import gaussian_perturbations, infidelity
from faithmap.metrics.localization import (
    energy_pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from faithmap.metrics.object_level import (
    HighestConfidenceResult,
    box_energy_pointing_game,
    highest_box_confidence,
)
from faithmap.metrics.pointing import PointingResult, centre_baseline, pointing_game
from faithmap.metrics.road import RoadResult, linear_imputation, road
from faithmap.metrics.robustness import (
    avg_sensitivity,
    input_perturbations,
    local_lipschitz,
    max_sensitivity,
)
from faithmap.metrics.sanity import (
    RandomisationResult,
    RandomLogitResult,
    model_randomisation,
    random_logit,
)

DEFAULT_METRICS = ("insertion", "deletion")
"""The metrics :func:`faithmap.evaluate` and ``faithmap bench`` run when none are named."""

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "ConfidenceResult",
    "CurveResult",
    "HighestConfidenceResult",
    "MetricResult",
    "MetricSpec",
    "PointingResult",
    "RandomLogitResult",
    "RandomisationResult",
    "RoadResult",
    "avg_sensitivity",
    "box_energy_pointing_game",
    "centre_baseline",
    "complexity",
    "deletion",
    "effective_complexity",
    "energy_pointing_game",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "gaussian_perturbations",
    "highest_box_confidence",
    "highest_confidence",
    "infidelity",
    "input_perturbations",
    "insertion",
    "linear_imputation",
    "local_lipschitz",
    "max_sensitivity",
    "model_randomisation",
    "pointing_game",
    "random_logit",
    "register_metric",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sparseness",
    "top_k_intersection",
    "trapezoid_auc",
]
