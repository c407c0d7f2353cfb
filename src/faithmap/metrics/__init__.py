"""Metrics of explanation quality: plain functions returning frozen results."""

from faithmap.metrics.confidence import ConfidenceResult, highest_confidence
from faithmap.metrics.curves import CurveResult, deletion, insertion, trapezoid_auc

METRICS = {"insertion": insertion, "deletion": deletion}
"""Metrics by name, as the command line and benchmark use them."""

__all__ = [
    "METRICS",
    "ConfidenceResult",
    "CurveResult",
    "deletion",
    "highest_confidence",
    "insertion",
    "trapezoid_auc",
]
