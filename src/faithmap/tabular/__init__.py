"""Tabular models and data: rows ``(N, F)`` whose columns are the features.

- :func:`tabular_model`: a scikit-learn-style estimator (``predict_proba`` / ``predict``) or a
  torch MLP as a :class:`~faithmap.core.model.Model`;
- :func:`explain_rows` / :func:`explain_csv`: attributions with column names, optionally
  against a background set (:func:`explain_with_background`);
- :func:`chaos_regression`: ChaosMining-style symbolic regression with analytic ground truth,
  scored by :func:`uniformity_score` and the metric :func:`top_k_features`; a small MLP
  regressor to explain (:func:`mlp_regressor`, :func:`fit_regressor`).
"""

from faithmap.tabular.background import BackgroundFill, explain_with_background
from faithmap.tabular.chaos import FORMULAS, ChaosSet, Formula, FormulaModel, chaos_regression
from faithmap.tabular.explain import TabularExplanation, explain_csv, explain_rows
from faithmap.tabular.mlp import fit_regressor, mlp_regressor
from faithmap.tabular.model import EstimatorFunction, load_estimator, tabular_model
from faithmap.tabular.scores import top_k_features, uniformity_score

__all__ = [
    "FORMULAS",
    "BackgroundFill",
    "ChaosSet",
    "EstimatorFunction",
    "Formula",
    "FormulaModel",
    "TabularExplanation",
    "chaos_regression",
    "explain_csv",
    "explain_rows",
    "explain_with_background",
    "fit_regressor",
    "load_estimator",
    "mlp_regressor",
    "tabular_model",
    "top_k_features",
    "uniformity_score",
]
