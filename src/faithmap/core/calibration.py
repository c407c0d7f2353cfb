"""What one batch-size measurement may spend, and the sizes it chooses among.

A measurement (:func:`faithmap.core.batching.fastest_batch_size`) is bounded by the job it
serves: a :class:`Calibration` holds the job's size, the share of its time the measurement may
take, and afterwards what was found. :meth:`faithmap.core.measured_sizes.MeasuredSizes.size_for`
sets one up around its ``measure`` callback (:func:`bounded`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_BATCH_BYTES = 256 * 2**20
SMALL_JOB = 16
"""A job of at most this many rows runs in one call, unmeasured: timing costs more than it saves."""
ROW_UNIT = 8
"""Measured batch sizes are whole multiples of this many rows (see
:func:`~faithmap.core.batching.row_spans`)."""
LONG_CALL = 0.25
"""Seconds of one call after which an unbounded scan stops (see
:func:`~faithmap.core.batching.fastest_batch_size`)."""


@dataclass
class Calibration:
    """What one measurement may spend, and what it found.

    ``rows`` is the job's size; the measurement's time is held to ``share`` of the job's
    estimated time (``rows`` times the best seconds per sample found so far), or ``floor``
    seconds if that is more. ``known`` holds seconds per sample measured earlier (this process
    or the cache file), which are not timed again. After the measurement, ``timings`` holds every
    size's seconds per sample and ``complete`` says whether the scan ended on its own (the gain
    fell below noise, a call grew long, the memory cap) rather than at the job's size or budget.
    """

    rows: int
    share: float = 0.2
    floor: float = 0.02
    known: dict[int, float] = field(default_factory=dict)
    timings: dict[int, float] = field(default_factory=dict)
    complete: bool = False
    ceiling: int | None = None
    """The largest size that ran, when a larger one ran out of memory (the scan stopped there)."""

    def budget(self, seconds_per_sample: float) -> float:
        """The seconds the measurement may spend, given the best seconds per sample so far."""
        return max(self.floor, self.share * self.rows * seconds_per_sample)


_CALIBRATION: ContextVar[Calibration | None] = ContextVar("faithmap_calibration", default=None)
"""The bounds of the measurement under way: :meth:`MeasuredSizes.size_for` sets them around its
``measure`` callback, and :func:`fastest_batch_size` reads them when not given ``calibration``."""


@contextlib.contextmanager
def bounded(calibration: Calibration) -> Iterator[None]:
    """Make ``calibration`` the bounds of the measurement run inside the block."""
    token = _CALIBRATION.set(calibration)
    try:
        yield
    finally:
        _CALIBRATION.reset(token)


def current() -> Calibration | None:
    """The bounds of the measurement under way, if one was set up with :func:`bounded`."""
    return _CALIBRATION.get()
