"""Tabular models as faithmap sees them: scikit-learn-style estimators and torch MLPs.

A torch module over rows ``(N, F)`` is already a :class:`~faithmap.core.model.Model`. An estimator
with ``predict_proba`` / ``decision_function`` / ``predict`` is wrapped by
:func:`tabular_model`: rows go to it as a float64 numpy array (or a pandas DataFrame with its
column names when it was fitted on one, so scikit-learn sees the names it was fitted with), and
its outputs come back as a tensor ``(N, C)`` on the rows' device and dtype.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from faithmap.core.model import Model
from faithmap.core.validation import check_choice
from faithmap.errors import FileProblemError, InvalidParameterError, ModelError

Output = Literal["auto", "predict_proba", "decision_function", "predict"]
OUTPUTS = ("auto", "predict_proba", "decision_function", "predict")


class EstimatorFunction:
    """One output method of an estimator as a function of row tensors.

    Parameters
    ----------
    estimator : object
        A fitted estimator (scikit-learn, XGBoost, LightGBM, ...).
    output : {"predict_proba", "decision_function", "predict"}
        The method called.
    columns : sequence of str or None
        Column names to hand the estimator a pandas DataFrame; ``None`` hands it numpy.
    """

    def __init__(self, estimator: Any, output: str, columns: Sequence[str] | None) -> None:
        self.estimator = estimator
        self.output = output
        self.columns = None if columns is None else list(columns)
        self.function: Callable[[Any], Any] = getattr(estimator, output)

    def __repr__(self) -> str:
        return f"{type(self.estimator).__name__}.{self.output}"

    def __call__(self, rows: Tensor) -> Tensor:
        array = rows.detach().cpu().double().numpy()
        if self.columns is not None:
            import pandas

            if len(self.columns) != array.shape[1]:
                raise ModelError(
                    f"The estimator was fitted on {len(self.columns)} columns but the rows have "
                    f"{array.shape[1]}. Pass rows with the columns {self.columns}."
                )
            given: Any = pandas.DataFrame(array, columns=self.columns)
        else:
            given = array
        result = np.asarray(self.function(given))
        if not np.issubdtype(result.dtype, np.number) or np.issubdtype(result.dtype, np.bool_):
            raise ModelError(
                f"{self!r} returned {result.dtype} values (class labels?), which cannot be "
                "attributed. Explain predict_proba or decision_function instead "
                "(output='predict_proba')."
            )
        return torch.as_tensor(result.astype(np.float64)).to(device=rows.device, dtype=rows.dtype)


def fitted_columns(estimator: Any) -> tuple[str, ...] | None:
    """The column names ``estimator`` was fitted with (scikit-learn's ``feature_names_in_``)."""
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None else tuple(str(name) for name in names)


def tabular_model(
    estimator: Any,
    *,
    output: Output = "auto",
    batch_size: int | None = None,
) -> Model:
    """A :class:`~faithmap.core.model.Model` over rows ``(N, F)`` from any tabular model.

    Parameters
    ----------
    estimator : Model, nn.Module, estimator or callable
        A faithmap ``Model`` is returned as it is; an ``nn.Module`` (a torch MLP) or a plain
        callable on row tensors is wrapped directly; an object with ``predict_proba``,
        ``decision_function`` or ``predict`` (scikit-learn, XGBoost, ...) is called through
        the method ``output`` names.
    output : {"auto", "predict_proba", "decision_function", "predict"}, default="auto"
        ``"auto"``: ``predict_proba`` if the estimator has it (a classifier), else
        ``predict`` (a regressor). The estimator's outputs are explained as they are: no
        softmax is applied on top of them, whatever a method's ``activation``.
    batch_size : int or None, default=None
        Rows per call (``None``: measured, see :class:`~faithmap.core.model.Model`).

    Returns
    -------
    Model

    References
    ----------
    Pedregosa et al., "Scikit-learn: Machine Learning in Python", JMLR 12, 2011.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 0.9], [0.9, 0.1]])
    >>> model = tabular_model(LogisticRegression().fit(X, [0, 1, 0, 1]), batch_size=4)
    >>> model.outputs(torch.tensor(X, dtype=torch.float32)).shape
    torch.Size([4, 2])
    """
    check_choice(output, "output", "tabular_model", OUTPUTS)
    if isinstance(estimator, Model):
        return estimator
    if isinstance(estimator, nn.Module):
        return Model(estimator, batch_size=batch_size)
    methods = [m for m in OUTPUTS[1:] if callable(getattr(estimator, m, None))]
    if not methods:
        if callable(estimator):
            return Model(estimator, batch_size=batch_size)
        raise ModelError(
            "A tabular model must be a torch module, a callable on row tensors, or an estimator "
            f"with predict_proba, decision_function or predict. Got {type(estimator).__name__}."
        )
    if output == "auto":
        output = "predict_proba" if "predict_proba" in methods else "predict"
    if output not in methods:
        raise InvalidParameterError(
            f"The estimator {type(estimator).__name__} has no {output!r} method. It has: "
            f"{', '.join(methods)}."
        )
    function = EstimatorFunction(estimator, output, fitted_columns(estimator))
    return Model(function, batch_size=batch_size, outputs="probabilities")


def load_estimator(path: Path, *, trust_pickle: bool = False) -> Any:
    """A fitted estimator saved with :mod:`pickle` or ``joblib.dump`` (``.pkl``, ``.joblib``).

    Unpickling runs code chosen by whoever wrote the file, so it is refused unless
    ``trust_pickle=True``: only for files from a source you trust.

    Raises
    ------
    FileProblemError
        If ``trust_pickle`` is not set, the file is missing, or it cannot be unpickled.

    References
    ----------
    Python documentation, "pickle — Python object serialization" (its security warning).
    """
    path = Path(path)
    if not trust_pickle:
        raise FileProblemError(
            f"{str(path)!r} is a pickled estimator: unpickling runs code chosen by whoever wrote "
            "the file. If you trust its source, pass trust_pickle=True (--trust-pickle on the "
            "command line)."
        )
    if not path.is_file():
        raise FileProblemError(f"The estimator file {str(path)!r} does not exist.")
    try:
        if path.suffix.lower() == ".joblib":
            import joblib

            return joblib.load(path)
        with path.open("rb") as handle:
            return pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise FileProblemError(
            f"Could not unpickle {str(path)!r} ({type(err).__name__}: {err}). Save the fitted "
            "estimator with pickle.dump or joblib.dump, with the same packages installed."
        ) from err
