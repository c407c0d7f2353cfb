"""What a benchmark report shows: the rows, curves, maps and settings of one run.

:class:`ReportData` is the boundary between the benchmark's store and
:func:`faithmap.bench.report.write_report`: the store builds one from a run, the report reads
nothing else. It holds plain Python values and CPU tensors, is frozen, and checks its shapes
when built, so that a report never fails half-way through writing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from faithmap.errors import InvalidParameterError, ShapeError

__all__ = ["ReportData", "ReportRow"]


@dataclass(frozen=True)
class ReportRow:
    """One measurement: a metric of one sample's explanation by one method on one model.

    Costs are per image: ``expl_passes`` and ``expl_seconds`` are what the explanation of this
    sample cost (forward plus backward passes of the model, and wall-clock seconds);
    ``metric_passes`` and ``metric_seconds`` what the metric cost.

    Attributes
    ----------
    sample : int
        Index of the sample in :attr:`ReportData.images` (0 to S - 1).
    model, method, metric : str
        Names as the user wrote them; the report escapes them.
    value : float
        The metric's value for this sample (NaN when undefined, e.g. no mask).
    expl_passes, expl_seconds, metric_passes, metric_seconds : float
    """

    sample: int
    model: str
    method: str
    metric: str
    value: float
    expl_passes: float
    expl_seconds: float
    metric_passes: float
    metric_seconds: float


def _ordered(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`~faithmap.bench.report.write_report` shows about one benchmark run.

    Attributes
    ----------
    run_id : str
        The run's identifier (for example its config hash), shown in the title.
    config : mapping
        The run's configuration as JSON-like values, shown verbatim in the report.
    rows : sequence of ReportRow
        One per (sample, model, method, metric).
    higher_is_better : mapping from metric name to bool
        The direction of every metric in ``rows``: ranks put the best value first.
    curves : mapping from (model, method, metric) to (Tensor, Tensor), optional
        Insertion/deletion curves: the fractions ``(K,)`` and the per-sample scores ``(S, K)``.
    attributions : mapping from (model, method) to Tensor, optional
        ``(S, H, W)`` attribution maps of the samples in :attr:`images`, in their order
        (``(S, 1, H, W)`` is accepted and squeezed).
    images : Tensor, optional
        ``(S, 3, H, W)`` inputs in [0, 1] (other ranges are stretched per image for display);
        needed when ``attributions`` is not empty.
    masks : Tensor, optional
        ``(S, 1, H, W)`` ground-truth masks (bool), outlined on the heatmaps.
    findings : sequence of str, optional
        Statements a named suite makes about this run's results (for example, which findings
        of a paper hold), shown first on the page.
    versions : mapping from package name to version string, optional
    created : str, optional
        When the run was created (ISO 8601), shown in the title.
    command : str, optional
        The command line that created the run, shown in the title.
    labels : sequence of int, optional
        The true class of each sample in :attr:`images`.
    predicted : mapping from model to a sequence of int, optional
        The class each model explained for each sample (the predicted class in a benchmark).
    class_names : sequence of str, optional
        Names of the class indices in ``labels`` and ``predicted``.
    skipped : mapping from (model, method) to str, optional
        Why a method has no result on a model (it does not apply to it).
    figures : sequence of (str, bytes), optional
        Extra figures a suite draws (caption, PNG bytes), shown in their own section (the
        grid suite's AggAtt bins).

    References
    ----------
    .. [1] Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation
       of Black-box Models." BMVC 2018 (the insertion and deletion curves).
    """

    run_id: str
    config: Mapping[str, Any]
    rows: Sequence[ReportRow]
    higher_is_better: Mapping[str, bool]
    curves: Mapping[tuple[str, str, str], tuple[Tensor, Tensor]] = field(default_factory=dict)
    attributions: Mapping[tuple[str, str], Tensor] = field(default_factory=dict)
    images: Tensor | None = None
    masks: Tensor | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    findings: Sequence[str] = ()
    created: str = ""
    command: str = ""
    labels: Sequence[int] | None = None
    predicted: Mapping[str, Sequence[int]] = field(default_factory=dict)
    class_names: Sequence[str] = ()
    skipped: Mapping[tuple[str, str], str] = field(default_factory=dict)
    figures: Sequence[tuple[str, bytes]] = ()

    def __post_init__(self) -> None:
        squeezed = {
            key: maps[:, 0] if maps.dim() == 4 and maps.shape[1] == 1 else maps
            for key, maps in self.attributions.items()
        }
        object.__setattr__(self, "attributions", squeezed)  # normalising a frozen field
        if not self.rows:
            raise InvalidParameterError("A report needs at least one row. Got none.")
        missing = [m for m in self.metrics if m not in self.higher_is_better]
        if missing:
            raise InvalidParameterError(
                "The 'higher_is_better' parameter of ReportData must give the direction of "
                f"every metric. Got none for {', '.join(map(repr, missing))}."
            )
        for key, (fractions, curve) in self.curves.items():
            if fractions.dim() != 1 or curve.dim() != 2 or curve.shape[1] != fractions.shape[0]:
                raise ShapeError(
                    f"The curve {key!r} of ReportData must be fractions (K,) and scores (S, K). "
                    f"Got {tuple(fractions.shape)} and {tuple(curve.shape)} instead."
                )
        if self.attributions and self.images is None:
            raise InvalidParameterError(
                "ReportData with attributions needs the 'images' they explain. Got None."
            )
        if self.images is not None:
            self._check_images(self.images)
        for row in self.rows:
            if not isinstance(row.value, int | float) or math.isinf(row.value):
                raise InvalidParameterError(
                    f"Every row value of ReportData must be a finite number or NaN. Got "
                    f"{row.value!r} for {row.model!r} {row.method!r} {row.metric!r}."
                )

    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ShapeError(
                f"The 'images' of ReportData must have shape (S, 3, H, W). Got "
                f"{tuple(images.shape)} instead."
            )
        samples, _, height, width = images.shape
        per_sample = {
            "labels": self.labels,
            **{f"predicted[{m!r}]": p for m, p in self.predicted.items()},
        }
        for name, classes in per_sample.items():
            if classes is not None and len(classes) != samples:
                raise ShapeError(
                    f"The {name} of ReportData must give one class per image ({samples}). Got "
                    f"{len(classes)} instead."
                )
        if self.masks is not None and tuple(self.masks.shape) != (samples, 1, height, width):
            raise ShapeError(
                f"The 'masks' of ReportData must have shape {(samples, 1, height, width)}, "
                f"matching the images. Got {tuple(self.masks.shape)} instead."
            )
        for key, maps in self.attributions.items():
            if tuple(maps.shape) != (samples, height, width):
                raise ShapeError(
                    f"The attributions {key!r} of ReportData must have shape "
                    f"{(samples, height, width)}, matching the images. Got "
                    f"{tuple(maps.shape)} instead."
                )

    @property
    def models(self) -> tuple[str, ...]:
        """Model names in order of first appearance in :attr:`rows`."""
        return _ordered([row.model for row in self.rows])

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in order of first appearance in :attr:`rows`."""
        return _ordered([row.method for row in self.rows])

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names in order of first appearance in :attr:`rows`."""
        return _ordered([row.metric for row in self.rows])
