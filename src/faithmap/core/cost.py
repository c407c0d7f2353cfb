"""The cost ledger: what an explanation or a metric spent, in model passes and seconds.

Model passes are counted per sample: scoring a batch of 32 images is 32 forward passes, as in
the forward-pass counts of the RISE, SMDL and LiMA papers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Forward passes, backward passes and wall-clock seconds.

    ``seconds`` is the work itself; ``calibration_seconds`` is the time spent measuring the
    model's best batch size along the way (zero once it is known, in this process or the cache
    file), kept apart so that the two can be compared.
    """

    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    calibration_seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.forward + other.forward,
            self.backward + other.backward,
            self.seconds + other.seconds,
            self.calibration_seconds + other.calibration_seconds,
        )

    def __sub__(self, other: Cost) -> Cost:
        return Cost(
            self.forward - other.forward,
            self.backward - other.backward,
            self.seconds - other.seconds,
            self.calibration_seconds - other.calibration_seconds,
        )

    @property
    def passes(self) -> int:
        """Forward plus backward passes."""
        return self.forward + self.backward


@dataclass
class Ledger:
    """A running count of passes; :meth:`track` measures what a block of code spends.

    ``calibration_seconds`` is the time spent measuring the best batch size, kept apart.
    """

    forward: int = 0
    backward: int = 0
    calibration_seconds: float = 0.0

    def snapshot(self) -> Cost:
        """The passes counted so far (seconds are measured by trackers)."""
        return Cost(self.forward, self.backward, 0.0)

    @contextmanager
    def track(self) -> Iterator[Tracker]:
        """Measure the passes and seconds spent inside the ``with`` block."""
        tracker = Tracker(self, self.snapshot(), time.perf_counter(), self.calibration_seconds)
        try:
            yield tracker
        finally:
            tracker.close()


@dataclass
class Tracker:
    """The handle :meth:`Ledger.track` yields; ``cost`` is final once the block exits."""

    ledger: Ledger
    start: Cost
    started_at: float
    calibration_at_start: float
    final: Cost | None = None

    def close(self) -> None:
        """Freeze the cost of the tracked block."""
        if self.final is None:
            self.final = self.cost

    @property
    def cost(self) -> Cost:
        """The cost so far, or the final cost once the block has exited.

        Its seconds leave out the model's batch-size measurement
        (``Ledger.calibration_seconds``), which is not part of the work being tracked; that
        time is reported apart, as ``calibration_seconds``.
        """
        if self.final is not None:
            return self.final
        spent = self.ledger.snapshot() - self.start
        calibration = self.ledger.calibration_seconds - self.calibration_at_start
        elapsed = time.perf_counter() - self.started_at - calibration
        return Cost(spent.forward, spent.backward, elapsed, calibration)
