"""Metrics of explanation quality: plain functions returning frozen results.

Every metric returns a :class:`MetricResult` (one value per sample, the mean, the cost in
passes and the choices made) and is registered by name in :data:`METRICS`; importing this
package registers them all.
"""

from faithmap.core.metric import MetricResult, MetricSpec
from faithmap.core.registry import METRICS, register_metric
from faithmap.metrics.completeness import CompletenessResult, completeness
from faithmap.metrics.complexity import complexity, effective_complexity, sparseness
from faithmap.metrics.confidence import ConfidenceResult, highest_confidence
from faithmap.metrics.confidence_change import average_drop, average_increase
from faithmap.metrics.curves import CurveResult, deletion, insertion, trapezoid_auc
from faithmap.metrics.fidelity import faithfulness_correlation, faithfulness_estimate
from faithmap.metrics.grid import AggAttResult, aggatt, grid_pointing_game
from faithmap.metrics.infidelity import gaussian_perturbations, infidelity
from faithmap.metrics.localization import (
    energy_pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from faithmap.metrics.monotonicity import (
    MonotonicityResult,
    monotonicity,
    monotonicity_correlation,
)
from faithmap.metrics.mprt_variants import (
    EfficientRandomisationResult,
    efficient_model_randomisation,
    smooth_model_randomisation,
    smoothing_noise,
)
from faithmap.metrics.object_level import (
    HighestConfidenceResult,
    box_energy_pointing_game,
    highest_box_confidence,
)
from faithmap.metrics.pointing import PointingResult, centre_baseline, pointing_game
from faithmap.metrics.region_perturbation import RegionCurveResult, irof, selectivity
from faithmap.metrics.relative_stability import (
    relative_input_stability,
    relative_output_stability,
    relative_representation_stability,
)
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
from faithmap.metrics.sensitivity_n import SensitivityNResult, sensitivity_n

DEFAULT_METRICS = ("insertion", "deletion")
"""The metrics :func:`faithmap.evaluate` and ``faithmap bench`` run when none are named."""

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "AggAttResult",
    "CompletenessResult",
    "ConfidenceResult",
    "CurveResult",
    "EfficientRandomisationResult",
    "HighestConfidenceResult",
    "MetricResult",
    "MetricSpec",
    "MonotonicityResult",
    "PointingResult",
    "RandomLogitResult",
    "RandomisationResult",
    "RegionCurveResult",
    "RoadResult",
    "SensitivityNResult",
    "aggatt",
    "average_drop",
    "average_increase",
    "avg_sensitivity",
    "box_energy_pointing_game",
    "centre_baseline",
    "completeness",
    "complexity",
    "deletion",
    "effective_complexity",
    "efficient_model_randomisation",
    "energy_pointing_game",
    "faithfulness_correlation",
    "faithfulness_estimate",
    "gaussian_perturbations",
    "grid_pointing_game",
    "highest_box_confidence",
    "highest_confidence",
    "infidelity",
    "input_perturbations",
    "insertion",
    "irof",
    "linear_imputation",
    "local_lipschitz",
    "max_sensitivity",
    "model_randomisation",
    "monotonicity",
    "monotonicity_correlation",
    "pointing_game",
    "random_logit",
    "register_metric",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "selectivity",
    "sensitivity_n",
    "smooth_model_randomisation",
    "smoothing_noise",
    "sparseness",
    "top_k_intersection",
    "trapezoid_auc",
]
