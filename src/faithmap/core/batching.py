"""Choosing a batch size by measuring throughput.

The fastest batch size is not the largest that fits: on a 2-core CPU a small CNN's backward
pass runs about 1.5x slower per sample at batch 256 than at 8-32 (cache pressure), while a GPU
keeps gaining up to thousands. So faithmap times candidate sizes on the real model and input
shape and keeps the fastest per sample.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_BATCH_BYTES = 256 * 2**20


def _best_time(
    run: Callable[[Tensor], object],
    batch: Tensor,
    *,
    min_repeats: int,
    min_seconds: float,
    max_repeats: int,
) -> float:
    """The fastest of repeated timed calls: at least ``min_repeats`` and ``min_seconds`` in all.

    The minimum, not the mean, is what the machine can do; other processes only add to it.
    """
    run(batch)
    timings: list[float] = []
    while len(timings) < max_repeats and (len(timings) < min_repeats or sum(timings) < min_seconds):
        start = time.perf_counter()
        run(batch)
        timings.append(time.perf_counter() - start)
    return min(timings)


def fastest_batch_size(
    run: Callable[[Tensor], object],
    sample: Tensor,
    *,
    candidates: tuple[int, ...] = CANDIDATES,
    min_repeats: int = 3,
    min_seconds: float = 0.03,
    max_repeats: int = 20,
    patience: int = 3,
    slower: float = 1.15,
    tolerance: float = 1.05,
    budget_seconds: float = 0.25,
    finalists: int = 3,
    rounds: int = 2,
) -> tuple[int, dict[int, float]]:
    """The batch size with the lowest measured seconds per sample.

    ``run`` is called on ``sample`` (one row, batch first) repeated to each candidate size, once
    to warm up and then repeatedly (see :func:`_best_time`). The search stops after
    ``patience`` sizes in a row more than ``slower`` times the best per-sample time, at a size
    whose input exceeds ``MAX_BATCH_BYTES``, or once one call takes over ``budget_seconds`` (a
    call that long already amortises per-call overhead). The ``finalists`` fastest sizes are
    then timed again in turns, ``rounds`` times, each keeping its best: a machine's slow moment
    during one size's turn in the scan would otherwise decide the choice. Of the sizes within
    ``tolerance`` of the fastest (timing noise), the largest is chosen: fewer calls mean less
    Python overhead around each. Returns it and the seconds per sample of each size timed.
    """
    row_bytes = sample[:1].numel() * sample.element_size()
    per_sample: dict[int, float] = {}
    best, worse_in_a_row = candidates[0], 0
    for size in candidates:
        if size > 1 and size * row_bytes > MAX_BATCH_BYTES:
            break
        batch = sample[:1].expand(size, *sample.shape[1:]).contiguous()
        seconds = _best_time(
            run, batch, min_repeats=min_repeats, min_seconds=min_seconds, max_repeats=max_repeats
        )
        per_sample[size] = seconds / size
        if per_sample[size] < per_sample[best]:
            best = size
        if per_sample[size] > slower * per_sample[best]:
            worse_in_a_row += 1
        else:
            worse_in_a_row = 0
        if worse_in_a_row >= patience or seconds > budget_seconds:
            break
    ranked = sorted(per_sample, key=per_sample.__getitem__)[:finalists]
    for _ in range(rounds if len(ranked) > 1 else 0):
        for size in ranked:
            batch = sample[:1].expand(size, *sample.shape[1:]).contiguous()
            seconds = _best_time(run, batch, min_repeats=1, min_seconds=0.0, max_repeats=1)
            per_sample[size] = min(per_sample[size], seconds / size)
    fastest = min(per_sample.values())
    chosen = max(size for size, t in per_sample.items() if t <= tolerance * fastest)
    return chosen, per_sample


Measurements = dict[tuple[Any, ...], tuple[int, int]]
_MEASURED: weakref.WeakKeyDictionary[Any, Measurements] = weakref.WeakKeyDictionary()
"""Per wrapped module: (chosen batch size, largest size timed) by input shape and pass kind."""


class MeasuredSizes:
    """The batch sizes measured for one model, by input shape, dtype, device and pass kind.

    The table is kept for as long as the model lives, so every :class:`~faithmap.Model` made
    around the same module reuses it; a model that cannot be weakly referenced (a bound method,
    a builtin) gets a table of its own.
    """

    def __init__(self, table: Measurements) -> None:
        self._table = table

    @classmethod
    def of(cls, model: Any) -> MeasuredSizes:
        """The measurements shared by every wrapper of ``model``."""
        try:
            return cls(_MEASURED.setdefault(model, {}))
        except TypeError:
            return cls({})

    @property
    def table(self) -> Measurements:
        """A copy of the measurements: ``(size, largest size timed)`` by shape and pass kind."""
        return dict(self._table)

    def size_for(
        self,
        sample: Tensor,
        gradients: bool,
        rows: int,
        measure: Callable[[tuple[int, ...]], int],
    ) -> int:
        """The batch size for a job of ``rows`` rows shaped like ``sample``.

        Sizes are measured, by ``measure(candidates)``, only up to the job's size (no point
        timing 1024 rows for a job of 33); a later, larger job measures again up to its own.
        """
        key = (tuple(sample.shape[1:]), sample.dtype, str(sample.device), gradients)
        size, largest_timed = self._table.get(key, (0, 0))
        if largest_timed < rows and largest_timed < CANDIDATES[-1]:
            largest = next((c for c in CANDIDATES if c >= rows), CANDIDATES[-1])
            size = measure(tuple(c for c in CANDIDATES if c <= largest))
            self._table[key] = (size, largest)
        return size
