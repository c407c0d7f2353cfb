"""ROAR and KAR (remove / keep and retrain): the public names of the two modules.

:mod:`faithmap.bench.roar_protocol` holds what a run measures (:class:`RoarConfig`), its
tasks, the pixel removal with its two fills and the retraining; :mod:`faithmap.bench.roar_tasks`
runs those tasks in the benchmark store (:func:`run_roar`, resumable).

References
----------
Hooker, Erhan, Kindermans, Kim, "A Benchmark for Interpretability Methods in Deep Neural
Networks", NeurIPS 2019. Rong, Leemann, Borisov, Kasneci, Kasneci, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML 2022.
"""

from faithmap.bench.roar_protocol import (
    DEFAULT_LABELS,
    EVAL_METRICS,
    FILLS,
    IMPUTATION_NOISE,
    MODES,
    ORIGINAL,
    RANDOM,
    ROAR_METHODS,
    RetrainTask,
    RoarConfig,
    plan_roar,
    remove_pixels,
    retrain,
)
from faithmap.bench.roar_tasks import run_roar

__all__ = [
    "DEFAULT_LABELS",
    "EVAL_METRICS",
    "FILLS",
    "IMPUTATION_NOISE",
    "MODES",
    "ORIGINAL",
    "RANDOM",
    "ROAR_METHODS",
    "RetrainTask",
    "RoarConfig",
    "plan_roar",
    "remove_pixels",
    "retrain",
    "run_roar",
]
