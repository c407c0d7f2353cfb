"""Tabular models as faithmap sees them: scikit-learn-style estimators and torch MLPs.

A torch module over rows ``(N, F)`` is already a :class:`~faithmap.core.model.Model`. An estimator
with ``predict_proba`` / ``decision_function`` / ``predict`` is wrapped by
:func:`tabular_model`: rows go to it as a float64 numpy array (or a pandas DataFrame with its
column names when it was fitted on one, so scikit-learn sees the names it was fitted with), and
its outputs come back as a tensor ``(N, C)`` on the rows' device and dtype.

An estimator is a :class:`EstimatorModel`: its batch size is measured like any model's, over
sizes up to :data:`ESTIMATOR_CANDIDATES` (an estimator's calls carry a fixed overhead of
input validation and per-call set-up that only large batches amortise; the usual torch
candidates stop at 1024 rows).
"""

from __future__ import annotations

import pickle
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from faithmap.core.batching import MAX_BATCH_BYTES, SMALL_JOB, Calibration, fastest_batch_size
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


ESTIMATOR_CANDIDATES = (64, 256, 1024, 4096, 16384, 65536, 262144)
"""The batch sizes timed for an estimator (rows per call), up to the job's size."""
ESTIMATOR_SEARCH: dict[str, Any] = {
    "min_repeats": 1,
    "min_seconds": 0.01,
    "long_call": 0.05,
    "patience": 2,
    "finalists": 2,
    "rounds": 1,
}
"""How :func:`~faithmap.core.batching.fastest_batch_size` searches them: a call over
``long_call`` seconds already amortises an estimator's per-call overhead, so the scan stops
there, and each size is timed briefly (its calls are long). The time spent is bounded by the
job, as for any model (:class:`~faithmap.core.batching.Calibration`)."""

COVERS_ALL = 2**62
"""The job size recorded for a measurement that holds for any job."""
Sizes = dict[tuple[Any, ...], tuple[int, int]]
Timings = dict[tuple[Any, ...], dict[int, float]]
_ESTIMATOR_SIZES: weakref.WeakKeyDictionary[Any, tuple[Sizes, Timings]] = (
    weakref.WeakKeyDictionary()
)
"""Per estimator: (chosen batch size, largest job covered) and the seconds per sample of each
size timed, by output, row width, dtype and device."""


class EstimatorModel(Model):
    """A :class:`~faithmap.core.model.Model` of a fitted estimator (an :class:`EstimatorFunction`).

    The same as any ``Model`` (one stream of batches, costs counted, outputs declared as
    probabilities for ``predict_proba``), except how an unset ``batch_size`` is measured: by
    :func:`~faithmap.core.batching.fastest_batch_size` over :data:`ESTIMATOR_CANDIDATES` up to
    the job's size, so a large job is called in chunks of tens of thousands of rows, not 1024.
    The sizes are kept per estimator and reused by every ``EstimatorModel`` of it; the time
    spent measuring is counted in the ledger's ``calibration_seconds``.
    """

    module: EstimatorFunction

    def _batch_size_for(self, sample: Tensor, gradients: bool, rows: int) -> int:
        if self.batch_size is not None or gradients:
            return super()._batch_size_for(sample, gradients, rows)
        return self.estimator_batch_size(sample, rows)

    @property
    def estimator_batch_sizes(self) -> Sizes:
        """The sizes measured for this estimator: ``(size, largest job covered)`` by output, row
        shape, dtype and device (shared by every ``EstimatorModel`` of the estimator)."""
        return dict(self._tables()[0])

    def _tables(self) -> tuple[Sizes, Timings]:
        estimator = self.module.estimator
        try:
            return _ESTIMATOR_SIZES.setdefault(estimator, ({}, {}))
        except TypeError:  # not weakly referenceable: tables of this model's own
            tables: tuple[Sizes, Timings] = self.__dict__.setdefault("_own_sizes", ({}, {}))
            return tables

    def estimator_batch_size(self, sample: Tensor, rows: int) -> int:
        """The measured batch size for a job of ``rows`` rows shaped like ``sample``.

        A job of at most ``SMALL_JOB`` rows runs in one call. Otherwise sizes are timed up to the
        first candidate at least as large as the job, within the job's calibration budget, and
        kept; a later, larger job measures again up to its own size, timing only new sizes.
        """
        row_bytes = max(1, sample[:1].numel() * sample.element_size())
        if rows <= SMALL_JOB:
            return max(1, min(rows, MAX_BATCH_BYTES // row_bytes))
        sizes, timings = self._tables()
        key = (self.module.output, tuple(sample.shape[1:]), sample.dtype, str(sample.device))
        size, covered = sizes.get(key, (0, 0))
        if covered >= rows:
            return size
        largest = next((c for c in ESTIMATOR_CANDIDATES if c >= rows), ESTIMATOR_CANDIDATES[-1])
        plan = Calibration(rows=rows, known=dict(timings.get(key, {})))
        started = time.perf_counter()
        size, _ = fastest_batch_size(
            self._call,
            sample[:1].detach(),
            candidates=tuple(c for c in ESTIMATOR_CANDIDATES if c <= largest),
            calibration=plan,
            **ESTIMATOR_SEARCH,
        )
        self.ledger.calibration_seconds += time.perf_counter() - started
        # A scan that ended on its own (no gain, a long call) holds for any larger job.
        sizes[key] = (size, COVERS_ALL if plan.complete else largest)
        timings[key] = dict(plan.timings)
        return size


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
        Rows per call (``None``: measured, see :class:`~faithmap.core.model.Model`; for an
        estimator over sizes up to 262,144 rows, see :class:`EstimatorModel`).

    Returns
    -------
    Model
        An :class:`EstimatorModel` for an estimator.

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
    return EstimatorModel(function, batch_size=batch_size, outputs="probabilities")


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
