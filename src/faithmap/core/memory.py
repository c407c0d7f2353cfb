"""Out-of-memory back-off: a batch that does not fit is split in half and run again.

A measured batch size can stop fitting later (a longer job on a busy GPU, another process's
allocations, a larger input), and the batch-size scan itself may try a size the device cannot
hold. Both cases catch the allocator's error (``torch.cuda.OutOfMemoryError``, or the
``RuntimeError`` CPU and MPS allocators raise with "out of memory" / "can't allocate memory"),
free the cached blocks, halve the batch and go on; the size that ran is remembered as the
model's ceiling for that input shape (see :meth:`faithmap.core.batching.MeasuredSizes.lower`).
Only a model that cannot take even one row is an error.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from faithmap.errors import FaithmapError, ModelError

T = TypeVar("T")
Spans = Callable[[int, int, int], Iterator[tuple[int, int]]]
"""``(total, size, unit) -> (start, stop)`` spans, as :func:`~faithmap.core.batching.row_spans`."""

_MESSAGES = ("out of memory", "can't allocate memory")
_log = logging.getLogger(__name__)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(err, FaithmapError):  # faithmap's own verdict ("ran out of memory at ...")
        return False
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _MESSAGES)


def free_memory(device: torch.device | None) -> None:
    """Release what a failed call left: unreachable tensors, then the CUDA caching allocator's
    free blocks (so the smaller retry does not fail on fragmentation)."""
    gc.collect()
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def halved(rows: int, unit: int) -> tuple[int, int]:
    """The batch size and row unit to retry ``rows`` rows with: half, in whole units while half
    is at least one unit, else plain rows.

    Examples
    --------
    >>> halved(64, 8), halved(8, 8), halved(3, 1)
    ((32, 8), (4, 1), (1, 1))
    """
    half = max(1, rows // 2)
    if unit > 1 and half >= unit:
        return half - half % unit, unit
    return half, 1


def one_row_error(device: torch.device | None, rows: int = 1) -> ModelError:
    """The error when even the smallest batch (one row) does not fit."""
    what = "a single row" if rows == 1 else f"{rows} rows, the smallest batch tried"
    return ModelError(
        f"The model ran out of memory on {what} (device {device}). Free memory on the "
        "device (other processes, other models), use a smaller input size, precision='bf16', "
        "or run on a device with more memory."
    )


def given_size_error(size: int, device: torch.device | None) -> ModelError:
    """The error when a batch size the user chose does not fit: never changed silently."""
    return ModelError(
        f"The model ran out of memory at the given batch_size={size} (device {device}). Give a "
        "smaller batch_size, or leave it out (None) so faithmap measures one, backing off "
        "when memory runs out."
    )


def stream(
    total: int,
    size: int,
    unit: int,
    attempt: Callable[[int, int], T],
    *,
    spans: Spans,
    on_back_off: Callable[[int], None],
    device: torch.device | None,
) -> Iterator[T]:
    """``attempt(start, stop)`` over ``total`` rows in batches of ``size``, in order.

    A batch whose attempt runs out of memory is run again as halves (and the rest of the job at
    that size), after freeing memory and telling ``on_back_off`` the new size. ``attempt`` must
    have no effect that a retry would repeat: what it returns is only used once yielded.
    """
    queue = list(spans(total, size, unit))
    position = 0
    while position < len(queue):
        start, stop = queue[position]
        failed = False
        try:
            result = attempt(start, stop)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            failed = True  # handled below, once the traceback (and its tensors) is released
        if failed:
            if stop - start == 1:
                raise one_row_error(device)
            free_memory(device)
            size, unit = halved(stop - start, unit)
            _log.info(
                "out of memory at %d rows on %s: backing off to %d", stop - start, device, size
            )
            on_back_off(size)
            rest = spans(total - start, size, unit)
            queue[position:] = [(start + a, start + b) for a, b in rest]
            continue
        position += 1
        yield result
