"""Choosing a batch size by measuring throughput.

The fastest batch size is not the largest that fits: on a 2-core CPU a small CNN runs 2-2.5x
slower per sample at batch 256 than at 16-32 (cache pressure), while a GPU keeps gaining up to
thousands. So faithmap times a few candidate sizes on the real model and input shape and keeps
the one with the lowest time per sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import Tensor

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MAX_BATCH_BYTES = 256 * 2**20


def fastest_batch_size(
    run: Callable[[Tensor], object],
    sample: Tensor,
    *,
    candidates: tuple[int, ...] = CANDIDATES,
    repeats: int = 2,
    patience: int = 2,
    budget_seconds: float = 0.25,
) -> tuple[int, dict[int, float]]:
    """The candidate batch size with the lowest measured seconds per sample.

    ``run`` is called on ``sample`` (one row, batch first) repeated to each candidate size,
    once to warm up and ``repeats`` times timed. The search stops after ``patience`` sizes in a
    row that are slower than the best so far, and skips sizes whose input exceeds
    ``MAX_BATCH_BYTES``, and stops once one timed call takes over ``budget_seconds`` (a call
    that long already amortises any per-call overhead). Of the sizes within 5% of the
    fastest (timing noise), the smallest is chosen. Returns it and the seconds per sample of
    each size timed.
    """
    row_bytes = sample[:1].numel() * sample.element_size()
    per_sample: dict[int, float] = {}
    best, worse_in_a_row = candidates[0], 0
    for size in candidates:
        if size > 1 and size * row_bytes > MAX_BATCH_BYTES:
            break
        batch = sample[:1].expand(size, *sample.shape[1:]).contiguous()
        run(batch)
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(batch)
            timings.append(time.perf_counter() - start)
        per_sample[size] = min(timings) / size
        if min(timings) > budget_seconds:
            break
        if per_sample[size] < per_sample[best]:
            best, worse_in_a_row = size, 0
        elif size != best:
            worse_in_a_row += 1
            if worse_in_a_row >= patience:
                break
    fastest = per_sample[best]
    smallest_as_fast = min(size for size, t in per_sample.items() if t <= 1.05 * fastest)
    return smallest_as_fast, per_sample
