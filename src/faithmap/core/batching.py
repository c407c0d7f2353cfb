"""Choosing a batch size by measuring throughput, at a small share of the job's cost.

The fastest batch size is not the largest that fits: on a 2-core CPU a small CNN's backward
pass runs about 1.5x slower per sample at batch 256 than at 8-32 (cache pressure), while a GPU
keeps gaining up to thousands. So faithmap times candidate sizes on the real model and input
shape and keeps the fastest per sample.

Measuring is itself work, so it is bounded by the job it serves (:class:`Calibration`): only the
sizes the job can use are timed, the scan stops once doubling the size gains less than timing
noise, and its time is held to a share of the job's estimated time. Measurements are kept for
the life of the module and, for an ``nn.Module``, across processes in a per-user cache file
(:func:`cache_file`) keyed by the module's architecture, input shape, dtype, device and pass
kind; the file is safe to delete and is never the reason a run fails. A measurement taken while
the machine is oversubscribed (:mod:`faithmap.core.threads`: a load spike slows some sizes more
than others) is used until the machine is quiet again, then measured again, in this process and
from the file: a spike never locks in a size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from faithmap.core.batch_size_cache import (
    CACHE_ENV,
    CACHE_FILE,
    CACHE_VERSION,
    MAX_CACHE_ENTRIES,
    cache_file,
    fingerprint,
)
from faithmap.core.calibration import (
    CANDIDATES,
    LONG_CALL,
    MAX_BATCH_BYTES,
    ROW_UNIT,
    SMALL_JOB,
    Calibration,
    current,
)
from faithmap.core.measured_sizes import MeasuredSizes
from faithmap.core.memory import free_memory, is_out_of_memory, one_row_error

__all__ = [
    "CACHE_ENV",
    "CACHE_FILE",
    "CACHE_VERSION",
    "CANDIDATES",
    "LONG_CALL",
    "MAX_BATCH_BYTES",
    "MAX_CACHE_ENTRIES",
    "ROW_UNIT",
    "SMALL_JOB",
    "Calibration",
    "MeasuredSizes",
    "cache_file",
    "fastest_batch_size",
    "fingerprint",
    "row_spans",
]


def _synchronizer(batch: Tensor) -> Callable[[], None]:
    """A function that waits for the device of ``batch`` (a no-op on the CPU)."""
    if batch.device.type == "cuda":
        return lambda: torch.cuda.synchronize(batch.device)
    return lambda: None


def _time_calls(
    run: Callable[[Tensor], object],
    batch: Tensor,
    *,
    min_repeats: int,
    window: float | Callable[[float], float],
    max_repeats: int,
    warm_up: bool,
) -> float:
    """The fastest of repeated timed calls of ``run(batch)``.

    With ``warm_up``, one untimed call first (the first call of a model pays for lazy set-up).
    A call shorter than ``window`` is repeated until ``min_repeats`` calls and ``window`` seconds
    in all; a longer one is timed once. ``window`` may be a function of the first timed call's
    seconds. The minimum, not the mean, is what the machine can do; other processes only add.
    """
    timings: list[float] = []
    synchronize = _synchronizer(batch)
    if warm_up:
        run(batch)
    while len(timings) < max_repeats:
        synchronize()
        start = time.perf_counter()
        run(batch)
        synchronize()  # a GPU runs asynchronously: wait for the work, not only its launch
        timings.append(time.perf_counter() - start)
        if callable(window):
            window = window(timings[0])
        if 0 < window <= timings[0]:
            break
        if len(timings) >= min_repeats and sum(timings) >= window:
            break
    return min(timings)


def _predicted_calls(call: float, window: float, min_repeats: int, max_repeats: int) -> int:
    """How many calls :func:`_time_calls` makes for calls of ``call`` seconds (not the first)."""
    if 0 < window <= call:
        return 1
    return max(min_repeats, min(max_repeats, math.ceil(window / max(call, 1e-9))))


def fastest_batch_size(
    run: Callable[[Tensor], object],
    sample: Tensor,
    *,
    candidates: tuple[int, ...] = CANDIDATES,
    min_repeats: int = 3,
    min_seconds: float = 0.03,
    max_repeats: int = 20,
    patience: int = 2,
    tolerance: float = 1.05,
    long_call: float | None = None,
    finalists: int = 3,
    rounds: int = 2,
    calibration: Calibration | None = None,
) -> tuple[int, dict[int, float]]:
    """The batch size with the lowest measured seconds per sample.

    ``run`` is called on ``sample`` (one row, batch first) repeated to each candidate size, in
    increasing order (see :func:`_time_calls`: repeated until ``min_seconds`` for short calls).
    The scan stops after ``patience`` sizes in a row that do not beat, by more than
    ``tolerance`` (timing noise), the per-sample time of the last size that did (so a slow but
    steady gain over several sizes still counts), at a size whose input exceeds
    ``MAX_BATCH_BYTES``, or once one call takes over ``long_call`` seconds (a call that long
    already amortises most per-call overhead). By default that is ``LONG_CALL`` when no
    ``calibration`` bounds the scan, and no limit when one does: the budget decides, since on
    these 2-core CPUs a ResNet-18 at 224² ran several times faster per sample at batch 8 than at
    1, whose calls already take over 0.25 s. The ``finalists`` fastest sizes are then timed
    again in turns, ``rounds`` times, each keeping its best: a machine's slow moment during one
    size's turn in the scan would otherwise decide the choice. Of the sizes within ``tolerance``
    of the fastest, the largest is chosen: fewer calls mean less Python overhead around each.

    ``calibration`` (by default the one :meth:`MeasuredSizes.size_for` set up, if any) bounds
    the time spent: a size is timed only if its predicted cost fits the job's budget (if the
    budget runs out while every doubling still gained, the next size is chosen untimed), and
    sizes it already knows are not timed again; its ``timings`` and ``complete`` are filled in.
    A size that runs out of memory ends the scan: memory is freed, the sizes timed so far
    compete, and the largest of them is the calibration's ``ceiling``.
    Returns the chosen size and the seconds per sample of each size known.
    """
    plan = calibration if calibration is not None else current()
    call_limit = long_call if long_call is not None else (LONG_CALL if plan is None else math.inf)
    started = time.perf_counter()
    known = dict(plan.known) if plan is not None else {}
    row_bytes = sample[:1].numel() * sample.element_size()
    per_sample: dict[int, float] = {}
    best: int | None = None
    no_gain, complete, timed_any = 0, False, False
    reference = math.inf  # the per-sample time at the last gain above noise
    refused: int | None = None  # the size the budget did not allow timing
    ratio = 1.0  # the last improvement of the best per-sample time: the next may be as large
    ceiling: int | None = None  # the largest size that ran, once a larger one did not fit

    def budget() -> float:
        if plan is None or best is None:
            return math.inf
        return plan.budget(per_sample[best])

    def window() -> float:
        return min(min_seconds, budget() / 8)

    def first_window(size: int) -> Callable[[float], float]:
        def after(first_call: float) -> float:
            if plan is None:
                return min_seconds
            return min(min_seconds, plan.budget(first_call / size) / 8)

        return after

    def batch_of(size: int) -> Tensor:
        return sample[:1].expand(size, *sample.shape[1:]).contiguous()

    for size in candidates:
        if size > 1 and size * row_bytes > MAX_BATCH_BYTES:
            complete = True
            break
        if size in known:
            seconds = known[size] * size
        else:
            if best is not None:
                call = size * per_sample[best]
                calls = _predicted_calls(call, window(), min_repeats, max_repeats)
                calls += 0 if timed_any else 1  # the warm-up, when the known sizes had none
                # the job may run faster still, and so shrink the budget: assume the last gain again
                allowed = plan.budget(per_sample[best] * ratio) if plan is not None else math.inf
                if time.perf_counter() - started + calls * call > allowed:
                    refused = size
                    break
            try:
                seconds = _time_calls(
                    run,
                    batch_of(size),
                    min_repeats=min_repeats,
                    window=window() if best is not None else first_window(size),
                    max_repeats=max_repeats,
                    warm_up=not timed_any,
                )
            except Exception as err:
                if not is_out_of_memory(err):
                    raise
                seconds = math.nan  # out of memory: the sizes timed so far are the candidates
            if math.isnan(seconds):
                free_memory(sample.device)
                if best is None:
                    raise one_row_error(sample.device, size)
                ceiling = max(per_sample)
                complete = True
                break
            timed_any = True
        per_sample[size] = seconds / size
        if best is None or per_sample[size] < per_sample[best]:
            if best is not None:
                ratio = per_sample[size] / per_sample[best]
            best = size
        if per_sample[size] * tolerance < reference:  # a gain above noise since the last one
            reference, no_gain = per_sample[size], 0
        else:
            no_gain += 1
        if no_gain >= patience or seconds > call_limit:
            complete = True
            break
    else:
        complete = True
    if best is None:  # nothing fitted the budget, not even the first size
        best = candidates[0]
    fresh = [size for size in per_sample if size not in known]
    ranked = sorted(fresh, key=per_sample.__getitem__)[:finalists]
    for _ in range(rounds if len(ranked) > 1 else 0):
        for size in ranked:
            call = size * per_sample[size]
            if time.perf_counter() - started + call > budget():
                break
            seconds = _time_calls(
                run, batch_of(size), min_repeats=1, window=0.0, max_repeats=1, warm_up=False
            )
            per_sample[size] = min(per_sample[size], seconds / size)
    fastest = min(per_sample.values(), default=0.0)
    chosen = max((size for size, t in per_sample.items() if t <= tolerance * fastest), default=best)
    if refused is not None and ceiling is None and no_gain == 0 and chosen == max(per_sample):
        # the budget ran out while each doubling still gained: one more doubling is a safe bet
        chosen = refused
    if plan is not None:
        plan.timings = dict(per_sample)
        plan.complete = complete
        plan.ceiling = ceiling
    return chosen, per_sample


def row_spans(total: int, size: int, *, unit: int = 1) -> Iterator[tuple[int, int]]:
    """The ``(start, stop)`` spans of ``total`` rows, ``size`` at a time, in whole units.

    A measured batch size differs between processes, and a row's floats may depend on the call
    it is computed in: on the CPU a row's outputs and input gradients were bit-identical in
    every call whose size is a multiple of 4, but not in calls of 2, 3 or 5 rows (matrix kernels
    treat leftover rows differently). So with ``unit > 1`` the size is rounded down to a multiple
    of ``unit`` (at least one unit), and the ``total % unit`` last rows always run as their own
    call: every row is computed at the same place of a call shaped the same way whatever size was
    measured (``tests/test_determinism.py`` checks every method). ``unit=1`` gives plain spans,
    for a size the user chose, which is the same in every process and may be all memory allows.
    """
    bulk = total
    if unit > 1:
        size = max(unit, size - size % unit)
        bulk = total - total % unit
    starts = list(range(0, bulk, size))
    stops = [*starts[1:], bulk] if starts else []
    if bulk < total:
        starts.append(bulk)
        stops.append(total)
    yield from zip(starts, stops, strict=True)
