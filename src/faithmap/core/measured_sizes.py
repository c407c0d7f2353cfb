"""The batch sizes measured for each model, kept for its life and in the cache file.

:class:`MeasuredSizes` is the table every :class:`~faithmap.Model` of the same module shares: by
input shape, dtype, device and pass kind, the chosen size, the largest job it covers, the
seconds per sample of each size timed, and the memory ceiling. A measurement taken while the
machine is oversubscribed (:mod:`faithmap.core.threads`) is used until the machine is quiet
again, then measured again, in this process and from the file: a load spike never locks in a
size.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from faithmap.core.batch_size_cache import (
    cache_file,
    cache_key,
    entry,
    fingerprint,
    read_cache,
    write_cache,
)
from faithmap.core.calibration import (
    CANDIDATES,
    MAX_BATCH_BYTES,
    SMALL_JOB,
    Calibration,
    bounded,
)
from faithmap.core.threads import advise_if_busy, is_oversubscribed, is_quiet

_log = logging.getLogger(__name__)

Measurements = dict[tuple[Any, ...], tuple[int, int]]
_MEASURED: weakref.WeakKeyDictionary[Any, Measurements] = weakref.WeakKeyDictionary()
"""Per wrapped module: (chosen batch size, largest job size covered) by input shape and kind."""
Timings = dict[tuple[Any, ...], dict[int, float]]
_TIMINGS: weakref.WeakKeyDictionary[Any, Timings] = weakref.WeakKeyDictionary()
"""Per wrapped module: seconds per sample by batch size, by input shape and pass kind."""
Ceilings = dict[tuple[Any, ...], int]
_CEILINGS: weakref.WeakKeyDictionary[Any, Ceilings] = weakref.WeakKeyDictionary()
"""Per wrapped module: the largest batch that fitted in memory, where a larger one did not."""
_BUSY: weakref.WeakKeyDictionary[Any, set[tuple[Any, ...]]] = weakref.WeakKeyDictionary()
"""Per wrapped module: the keys measured while the machine was oversubscribed."""


class MeasuredSizes:
    """The batch sizes measured for one model, by input shape, dtype, device and pass kind.

    The table is kept for as long as the model lives, so every :class:`~faithmap.Model` made
    around the same module reuses it; a model that cannot be weakly referenced (a bound method,
    a builtin) gets a table of its own. For an ``nn.Module`` the measurements are also kept in
    the cache file (:func:`cache_file`), so another process with the same architecture reuses
    them.
    """

    def __init__(
        self,
        table: Measurements,
        timings: Timings | None = None,
        model: Any = None,
        ceilings: Ceilings | None = None,
        busy: set[tuple[Any, ...]] | None = None,
    ):
        self._table = table
        self._busy: set[tuple[Any, ...]] = set() if busy is None else busy
        self._timings: Timings = {} if timings is None else timings
        self._ceilings: Ceilings = {} if ceilings is None else ceilings
        self._model = model
        self._fingerprint: str | bool | None = False  # False: not computed yet

    @classmethod
    def of(cls, model: Any) -> MeasuredSizes:
        """The measurements shared by every wrapper of ``model``."""
        try:
            return cls(
                _MEASURED.setdefault(model, {}),
                _TIMINGS.setdefault(model, {}),
                model,
                _CEILINGS.setdefault(model, {}),
                _BUSY.setdefault(model, set()),
            )
        except TypeError:
            return cls({}, {}, model, {}, set())

    @property
    def table(self) -> Measurements:
        """A copy of the measurements: ``(size, largest job size covered)`` by shape and kind."""
        return dict(self._table)

    @property
    def ceilings(self) -> Ceilings:
        """A copy of the memory ceilings: the largest batch that fitted, by shape and kind."""
        return dict(self._ceilings)

    @staticmethod
    def key(sample: Tensor, gradients: bool, precision: str = "fp32") -> tuple[Any, ...]:
        """What a measurement is kept under: input shape, dtype, device, pass kind (and the
        autocast precision, with the memory format when not contiguous, as ``Model`` names them:
        ``"bf16"``, ``"fp32+channels_last"``; nothing for plain fp32)."""
        key = (tuple(sample.shape[1:]), sample.dtype, str(sample.device), gradients)
        return key if precision == "fp32" else (*key, precision)

    def lower(self, sample: Tensor, gradients: bool, size: int, precision: str = "fp32") -> None:
        """Remember that no batch above ``size`` rows fits in memory for such inputs."""
        key = self.key(sample, gradients, precision)
        self._ceilings[key] = min(size, self._ceilings.get(key, size))

    def _cache_key(self, key: tuple[Any, ...]) -> tuple[Path, str] | None:
        path = cache_file()
        if path is None:
            return None
        if self._fingerprint is False:
            try:
                self._fingerprint = fingerprint(self._model)
            except Exception as err:  # an odd module is just not cached
                _log.debug("faithmap could not fingerprint %r: %s", type(self._model), err)
                self._fingerprint = None
        if not isinstance(self._fingerprint, str):
            return None
        return path, cache_key(self._fingerprint, key)

    def size_for(
        self,
        sample: Tensor,
        gradients: bool,
        rows: int,
        measure: Callable[[tuple[int, ...]], int],
        precision: str = "fp32",
    ) -> int:
        """The batch size for a job of ``rows`` rows shaped like ``sample``.

        A job of at most ``SMALL_JOB`` rows runs in one call, unmeasured. Otherwise the size
        comes from this process's table, else the cache file, else ``measure(candidates)``
        with the candidates up to the job's size (no point timing 1024 rows for a job of 33),
        bounded by a :class:`Calibration` for the job. A later, larger job measures again up to
        its own size, timing only the sizes not yet known. No size is above the memory ceiling
        (:meth:`lower`) found for such inputs.
        """
        key = self.key(sample, gradients, precision)
        size = self._size_for(key, sample, rows, measure)
        return min(size, self._ceilings.get(key, size))

    def _size_for(
        self,
        key: tuple[Any, ...],
        sample: Tensor,
        rows: int,
        measure: Callable[[tuple[int, ...]], int],
    ) -> int:
        row_bytes = max(1, sample[:1].numel() * sample.element_size())
        if rows <= SMALL_JOB:
            return max(1, min(rows, MAX_BATCH_BYTES // row_bytes))
        if key in self._busy and is_quiet():  # measured in a load spike: measure again
            self._busy.discard(key)
            self._table.pop(key, None)
            self._timings.pop(key, None)
        size, covered = self._table.get(key, (0, 0))
        if covered >= min(rows, CANDIDATES[-1]):  # no size beyond the last candidate is timed
            return size
        cached = self._cache_key(key)
        if cached is not None:
            raw = read_cache(cached[0]).get(cached[1])
            found = entry(raw)
            if found is not None and isinstance(raw, dict) and raw.get("busy") and is_quiet():
                found = None  # measured in a load spike: measured again, and overwritten
            if found is not None:
                size, covered, timings = found
                if isinstance(raw, dict) and raw.get("busy"):
                    self._busy.add(key)
                self._table[key] = (size, covered)
                self._timings[key] = {**timings, **self._timings.get(key, {})}
                if covered >= min(rows, CANDIDATES[-1]):
                    return size
        largest = next((c for c in CANDIDATES if c >= rows), CANDIDATES[-1])
        plan = Calibration(rows=rows, known=dict(self._timings.get(key, {})))
        with bounded(plan):
            size = measure(tuple(c for c in CANDIDATES if c <= largest))
        covered = CANDIDATES[-1] if plan.complete else largest
        self._table[key] = (size, covered)
        if plan.ceiling is not None:
            self._ceilings[key] = min(plan.ceiling, self._ceilings.get(key, plan.ceiling))
        if plan.timings:
            self._timings[key] = dict(plan.timings)
        busy = is_oversubscribed()
        if busy:  # used until the load falls, then measured again (here and from the file)
            advise_if_busy()
            self._busy.add(key)
        if cached is not None:
            timings = self._timings.get(key, {})
            write_cache(cached[0], cached[1], size, covered, timings, busy=busy)
        return size
