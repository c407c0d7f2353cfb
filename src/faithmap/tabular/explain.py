"""Explaining rows of a table, with column names: :func:`explain_rows` and :func:`explain_csv`.

Each column is one feature. Rows come as a tensor, a numpy array or a pandas DataFrame; the
model is a torch module, a callable on row tensors, or an estimator with ``predict_proba`` /
``predict`` (see :func:`~faithmap.tabular.model.tabular_model`). The result pairs the
:class:`~faithmap.core.explanation.Explanation` with the column names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faithmap.api import get_method
from faithmap.core.explanation import Explanation
from faithmap.core.model import Model
from faithmap.core.targets import TargetLike
from faithmap.core.validation import check_int
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.tabular.background import Mode, explain_with_background
from faithmap.tabular.model import EstimatorFunction, Output, fitted_columns, tabular_model

FRAME_COLUMNS = ("row", "feature", "feature_value", "attribution", "target")
"""The columns of :meth:`TabularExplanation.to_frame`, in order."""


@dataclass(frozen=True)
class TabularExplanation:
    """Attributions of rows, one per column, with the columns' names.

    Attributes
    ----------
    explanation : Explanation
        The method's result; ``explanation.attributions`` is ``(N, F)``.
    feature_names : tuple of str
        The name of each column, in order.
    inputs : Tensor
        The explained rows ``(N, F)``.
    """

    explanation: Explanation
    feature_names: tuple[str, ...]
    inputs: Tensor

    @property
    def attributions(self) -> Tensor:
        """``(N, F)`` attributions."""
        return self.explanation.attributions

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per (row, feature): :data:`FRAME_COLUMNS`."""
        import pandas

        n, columns = self.attributions.shape
        targets = self.explanation.target
        target_values = [None] * n if targets is None else [int(t) for t in targets.tolist()]
        return pandas.DataFrame(
            {
                "row": np.repeat(np.arange(n), columns),
                "feature": list(self.feature_names) * n,
                "feature_value": self.inputs.detach().double().cpu().numpy().reshape(-1),
                "attribution": self.attributions.detach().double().cpu().numpy().reshape(-1),
                "target": np.repeat(np.array(target_values, dtype=object), columns),
            },
            columns=list(FRAME_COLUMNS),
        )

    def top(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` columns of largest ``|attribution|`` in each row, with their values."""
        check_int(k, "k", "TabularExplanation.top", low=1)
        values = self.attributions.detach().double().cpu()
        order = values.abs().argsort(dim=1, descending=True, stable=True)[:, :k]
        return [
            [(self.feature_names[j], float(values[i, j])) for j in row.tolist()]
            for i, row in enumerate(order)
        ]

    def summary(self, k: int = 5) -> str:
        """One line per row: its target and its ``k`` most important columns."""
        targets = self.explanation.target
        lines = [f"{self.explanation.method}: top {k} of {len(self.feature_names)} columns"]
        for i, row in enumerate(self.top(k)):
            label = "" if targets is None else f" (target {int(targets[i])})"
            parts = ", ".join(f"{name} {value:+.4g}" for name, value in row)
            lines.append(f"row {i}{label}: {parts}")
        return "\n".join(lines)


def _row_dtype(model: Model) -> torch.dtype:
    """float64 for estimators (their numpy rows are float64), a module's own float dtype."""
    module = model.module
    if isinstance(module, nn.Module):
        first = next(module.parameters(), None)
        return first.dtype if first is not None and first.is_floating_point() else torch.float32
    return torch.float64 if isinstance(module, EstimatorFunction) else torch.float32


def _as_rows(
    rows: Any, names: Any, fitted: tuple[str, ...] | None, dtype: torch.dtype, owner: str
) -> tuple[Tensor, tuple[str, ...]]:
    """Rows as a float tensor ``(N, F)`` and the names of its columns."""
    if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # a pandas DataFrame
        header = tuple(str(column) for column in rows.columns)
        wanted = tuple(names) if names is not None else fitted if fitted is not None else header
        missing = [name for name in wanted if name not in header]
        if missing:
            raise ShapeError(
                f"The rows given to {owner} lack the columns {missing}. Their columns are "
                f"{list(header)}."
            )
        frame = rows.set_axis(list(header), axis=1)[list(wanted)]
        text = [
            str(c)
            for c, kind in zip(frame.columns, frame.dtypes, strict=True)
            if kind.kind not in "biuf"
        ]
        if text:
            raise ShapeError(
                f"The columns {text} given to {owner} are not numeric. Attributions need numeric "
                "columns: encode them, or leave them out (the 'columns' parameter)."
            )
        rows, names = frame.to_numpy(dtype=np.float64), wanted
    if isinstance(rows, np.ndarray):
        rows = _from_array(rows, dtype, owner)
    if not isinstance(rows, Tensor):
        raise ShapeError(
            f"The rows given to {owner} must be a tensor, a numpy array or a pandas DataFrame. "
            f"Got {type(rows).__name__} instead."
        )
    if rows.dim() != 2:
        hint = " For one row use x.reshape(1, -1)." if rows.dim() == 1 else ""
        raise ShapeError(
            f"The rows given to {owner} must have shape (N, F), one column per feature. Got "
            f"{tuple(rows.shape)} instead.{hint}"
        )
    if not rows.is_floating_point():
        rows = rows.to(dtype)
    if names is None:
        names = fitted if fitted is not None else tuple(f"x{i}" for i in range(rows.shape[1]))
    names = _checked_names(names, rows.shape[1], owner)
    if fitted is not None and names != fitted:
        raise InvalidParameterError(
            f"The feature names given to {owner} are not those the model was fitted with, "
            f"{list(fitted)}. Pass rows in that order, or leave feature_names out."
        )
    return rows, names


def _from_array(array: np.ndarray, dtype: torch.dtype, owner: str) -> Tensor:
    """A numeric numpy array as a tensor (a copy: DataFrame arrays may be read-only)."""
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise ShapeError(
            f"The rows given to {owner} must be numeric. Got a numpy array of {array.dtype}."
        )
    return torch.tensor(array, dtype=dtype)


def _checked_names(names: Any, count: int, owner: str) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise InvalidParameterError(
            f"The 'feature_names' parameter of {owner} must be a sequence of strings, one per "
            f"column. Got {names!r} instead."
        )
    checked: tuple[str, ...] = tuple(names)
    if len(checked) != count:
        raise InvalidParameterError(
            f"The 'feature_names' parameter of {owner} must name each of the {count} columns. "
            f"Got {len(checked)} names instead."
        )
    repeated = sorted({name for name in checked if checked.count(name) > 1})
    if repeated:
        raise InvalidParameterError(
            f"The 'feature_names' parameter of {owner} must hold distinct names. Got "
            f"{repeated} more than once."
        )
    return checked


def explain_rows(
    model: Any,
    rows: Any,
    feature_names: Any = None,
    *,
    method: str = "kernel_shap",
    target: TargetLike = None,
    background: Any = None,
    background_mode: Mode = "expectation",
    output: Output = "auto",
    batch_size: int | None = None,
    **params: Any,
) -> TabularExplanation:
    """Explain each row of a table with ``method``, one attribution per named column.

    Parameters
    ----------
    model : Model, nn.Module, estimator or callable
        A torch module over rows ``(N, F)``, a callable on row tensors, or an estimator with
        ``predict_proba`` / ``decision_function`` / ``predict`` (see
        :func:`~faithmap.tabular.model.tabular_model`); it is left as it was.
    rows : Tensor, numpy array or pandas DataFrame
        ``(N, F)`` numeric rows. A DataFrame's column names are its feature names; for an
        estimator fitted on a DataFrame its columns are taken in the fitted order.
    feature_names : sequence of str, optional
        A name per column (default: the DataFrame's columns, the estimator's fitted names, or
        ``x0, x1, ...``).
    method : str, default="kernel_shap"
        Any method that explains ``(N, F)`` inputs: ``kernel_shap``, ``lime``,
        ``feature_ablation``, ``sobol``, ``hsic`` (any model), ``integrated_gradients``,
        ``saliency``, ``gradient_shap``, ... (torch modules only).
    target : None, int, sequence or tensor of ints, or callable
        The output explained (``None``: the predicted class; ``0`` for a regressor).
    background : Tensor, numpy array or DataFrame, optional
        Rows ``(K, F)`` whose values replace removed columns (see
        :func:`~faithmap.tabular.background.explain_with_background`). Without it, removed
        columns become the method's own ``fill`` / ``baseline`` (0 by default).
    background_mode : {"expectation", "mean"}, default="expectation"
        Average over the background rows (``K`` times the passes, as shap's KernelExplainer),
        or use their mean row.
    output : {"auto", "predict_proba", "decision_function", "predict"}, default="auto"
        Which estimator method is explained.
    batch_size : int or None, default=None
        Rows per model call when ``model`` is not already a ``Model``.
    **params
        The method's parameters. A model with one output (a regressor) is explained on its raw
        output: ``activation="logits"`` unless given.

    Returns
    -------
    TabularExplanation

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 1)
    >>> result = explain_rows(net, torch.rand(2, 3), ["age", "income", "debt"], target=0)
    >>> result.to_frame().shape, result.feature_names
    ((6, 5), ('age', 'income', 'debt'))
    """
    owner = "explain_rows"
    wrapped = tabular_model(model, output=output, batch_size=batch_size)
    fitted = fitted_columns(getattr(wrapped.module, "estimator", None))
    dtype = _row_dtype(wrapped)
    tensor, names = _as_rows(rows, feature_names, fitted, dtype, owner)
    configured = get_method(method, **params)
    if "activation" not in params and hasattr(configured, "activation"):
        if wrapped.num_outputs is None:
            wrapped.outputs(tensor[:1])
        if wrapped.num_outputs == 1:
            configured = get_method(method, **{**params, "activation": "logits"})
    if background is None:
        explanation = configured.explain(wrapped, tensor, target)
    else:
        if any(key in params for key in ("fill", "baseline", "baseline_tensor", "background")):
            raise InvalidParameterError(
                f"{owner} got both a background and a method baseline (fill / baseline); "
                "give one of them."
            )
        if isinstance(background, np.ndarray):
            background = _from_array(background, tensor.dtype, owner)
        if not isinstance(background, Tensor):  # a DataFrame: its columns picked by name
            background, _ = _as_rows(background, names, fitted, tensor.dtype, owner)
        rows_background = background.to(tensor.dtype)
        explanation = explain_with_background(
            configured, wrapped, tensor, target, rows_background, mode=background_mode
        )
    return TabularExplanation(explanation, names, tensor)


def explain_csv(
    model: Any,
    path: str | Path,
    *,
    method: str = "kernel_shap",
    target: TargetLike = None,
    columns: Any = None,
    background: Any = None,
    background_mode: Mode = "expectation",
    output: Output = "auto",
    batch_size: int | None = None,
    **params: Any,
) -> TabularExplanation:
    """Explain every row of a CSV file (header first); see :func:`explain_rows`.

    Parameters
    ----------
    model : Model, nn.Module, estimator or callable
    path : str or Path
        A CSV file with a header row.
    method, target, background_mode, output, batch_size, **params
        As :func:`explain_rows`.
    columns : sequence of str, optional
        The feature columns, in the model's order (default: the estimator's fitted names, else
        every column; other columns, such as a label, are left out).
    background : str, Path, Tensor, numpy array or DataFrame, optional
        Background rows, or a CSV file of them with the same columns.

    Returns
    -------
    TabularExplanation
        Print ``summary()``; save ``to_frame()`` (``.to_csv``) or ``explanation.save``.

    References
    ----------
    Lundberg, Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.
    """
    frame = _read_csv(path, "explain_csv")
    if columns is not None:
        names = _checked_names(columns, len(tuple(columns)), "explain_csv")
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise InvalidParameterError(
                f"The 'columns' parameter of explain_csv names columns {missing} that the file "
                f"{str(path)!r} lacks. Its columns are {list(map(str, frame.columns))}."
            )
        frame = frame[list(names)]
    if isinstance(background, str | Path):
        background = _read_csv(background, "explain_csv (background)")
    return explain_rows(
        model,
        frame,
        method=method,
        target=target,
        background=background,
        background_mode=background_mode,
        output=output,
        batch_size=batch_size,
        **params,
    )


def _read_csv(path: str | Path, owner: str) -> Any:
    import pandas

    try:
        frame = pandas.read_csv(path)
    except (OSError, ValueError) as err:
        raise InvalidParameterError(
            f"{owner} cannot read the CSV file {str(path)!r}: {err}"
        ) from err
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ShapeError(f"The CSV file {str(path)!r} given to {owner} has no rows or no columns.")
    return frame
