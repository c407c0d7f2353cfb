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

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.memory import free_memory, is_out_of_memory, one_row_error
from faithmap.core.threads import advise_if_busy, is_oversubscribed, is_quiet

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MAX_BATCH_BYTES = 256 * 2**20
SMALL_JOB = 16
ROW_UNIT = 8
"""Measured batch sizes are whole multiples of this many rows (see :func:`row_spans`)."""
"""A job of at most this many rows runs in one call, unmeasured: timing costs more than it saves."""
LONG_CALL = 0.25
"""Seconds of one call after which an unbounded scan stops (see :func:`fastest_batch_size`)."""
CACHE_ENV = "FAITHMAP_CACHE_DIR"
"""Environment variable naming the cache folder; ``off`` (or ``0``, ``false``, ``none``) disables
the cache file."""
CACHE_FILE = "batch_sizes.json"
CACHE_VERSION = 1
MAX_CACHE_ENTRIES = 512
_OFF = {"off", "0", "false", "no", "none", "disabled"}

_log = logging.getLogger(__name__)


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
    plan = calibration if calibration is not None else _CALIBRATION.get()
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


# ------------------------------------------------------------------ the cache across processes
def cache_file() -> Path | None:
    """The per-user file of measured batch sizes, or ``None`` when the cache is off.

    ``$FAITHMAP_CACHE_DIR/batch_sizes.json`` if that variable is set (``off``, ``0``, ``false``
    or ``none`` disable the file), else ``$XDG_CACHE_HOME/faithmap/`` or ``~/.cache/faithmap/``.
    Deleting it only means the next run measures again.
    """
    folder = os.environ.get(CACHE_ENV)
    if folder is not None and folder.strip().lower() in _OFF:
        return None
    if folder:
        return Path(folder).expanduser() / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "faithmap" / CACHE_FILE


def fingerprint(model: Any) -> str | None:
    """A hash of what decides an ``nn.Module``'s speed, not of its weights' values.

    The classes (and their ``forward`` code), the module tree with each layer's settings
    (``repr``), and the names, shapes and dtypes of parameters and buffers. ``None`` for anything
    else (a plain callable is measured once per process, not cached across processes).
    """
    if not isinstance(model, nn.Module):
        return None
    digest = hashlib.sha256()
    for module in model.modules():
        cls = type(module)
        digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        code = getattr(getattr(cls, "forward", None), "__code__", None)
        if isinstance(code, CodeType):
            _hash_code(digest, code)
    digest.update(repr(model).encode())
    for kind, tensors in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for name, tensor in tensors:
            digest.update(f"{kind}:{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
    return digest.hexdigest()[:24]


def _hash_code(digest: Any, code: CodeType) -> None:
    """Add a function's code to ``digest``, nested code (comprehensions, lambdas) included.

    Not ``repr`` of the nested code objects: theirs holds a memory address, which differs in
    every process.
    """
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            _hash_code(digest, constant)
        else:
            digest.update(repr(constant).encode())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device}:{torch.cuda.get_device_name(device)}"
    return f"{device}:{platform.machine()}:{torch.get_num_threads()}threads"


def _cache_key(model_fingerprint: str, key: tuple[Any, ...]) -> str:
    shape, dtype, device, gradients, *precision = key  # precision only when not fp32
    kind = "forward_backward" if gradients else "forward"
    device_name = _device_name(torch.device(device))
    version = f"torch{torch.__version__}"
    autocast = "".join(f"|{p}" for p in precision)
    return f"{model_fingerprint}|{list(shape)}|{dtype}|{device_name}|{kind}{autocast}|{version}"


def _read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an empty table if the file is missing, unreadable or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _entry(raw: object) -> tuple[int, int, dict[int, float]] | None:
    """``(size, covered, seconds per sample by size)`` of a cache entry, or ``None`` if invalid."""
    if not isinstance(raw, dict):
        return None
    try:
        size, covered = int(raw["size"]), int(raw["covered"])
        timings = {int(k): float(v) for k, v in dict(raw["per_sample"]).items()}
        valid = size >= 1 and covered >= 1 and all(v > 0 for v in timings.values())
    except (KeyError, TypeError, ValueError):
        return None
    return (size, covered, timings) if valid else None


def _saved_at(entry: dict[str, Any]) -> float:
    """When an entry was written (0 if it does not say)."""
    try:
        return float(entry.get("saved", 0.0))
    except (TypeError, ValueError):
        return 0.0


def _write_cache(
    path: Path,
    key: str,
    size: int,
    covered: int,
    timings: dict[int, float],
    *,
    busy: bool = False,
) -> None:
    """Add one entry: re-read the file, then write a temporary file and rename it over.

    ``busy``: measured while the machine was oversubscribed; such an entry is measured again
    (and overwritten) by the first process that finds the machine quiet.

    Invalid entries are dropped, and the oldest beyond ``MAX_CACHE_ENTRIES``. Two processes
    writing at once can lose one's entry (it is measured again next time), but never leave a
    broken file; any error is logged and ignored.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = {k: v for k, v in _read_cache(path).items() if _entry(v) is not None}
        entries[key] = {
            "size": size,
            "covered": covered,
            "per_sample": {str(k): v for k, v in sorted(timings.items())},
            "saved": time.time(),
            **({"busy": True} if busy else {}),
        }
        if len(entries) > MAX_CACHE_ENTRIES:
            by_age = sorted(entries, key=lambda k: _saved_at(entries[k]))
            for stale in by_age[: len(entries) - MAX_CACHE_ENTRIES]:
                del entries[stale]
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".batch_sizes.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"version": CACHE_VERSION, "entries": entries}, out, indent=1)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    except Exception as err:  # the cache must never be why a run fails
        _log.debug("faithmap could not write its batch-size cache %s: %s", path, err)


# ------------------------------------------------------------------ measurements per model
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


@contextlib.contextmanager
def _bounded(calibration: Calibration) -> Iterator[None]:
    token = _CALIBRATION.set(calibration)
    try:
        yield
    finally:
        _CALIBRATION.reset(token)


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
        return path, _cache_key(self._fingerprint, key)

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
            raw = _read_cache(cached[0]).get(cached[1])
            found = _entry(raw)
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
        with _bounded(plan):
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
            _write_cache(cached[0], cached[1], size, covered, timings, busy=busy)
        return size
