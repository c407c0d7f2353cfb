"""A busy machine: noticing when the CPU cores are oversubscribed, and what helps.

torch's CPU kernels run on an OpenMP thread pool (libgomp). By default a libgomp thread that
finishes its share of a kernel *spins* while it waits for the others; when more runnable
processes than cores share the machine, the thread it waits for is descheduled and the spinning
burns the time slice that thread needed. Measured on a 2-core machine at load average 14–15
(other processes' work), 32 shapes images per call, 2 threads: the built-in CNN's forward pass
took 777 ms with spinning waits and 294 ms with passive ones (1 thread: 285 ms), the ViT's 1424
ms and 192 ms (1 thread: 209 ms) — ``benchmarks/busy_machine.py`` measures the whole benchmark.

Passive waiting (``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps) keeps the thread count,
so every float is what it was: a reduction split over 2 threads is split the same way. Fewer
threads would change results: the built-in ViT's input gradients differ by up to 2.4e-7 between
1 and 2 threads (its forward pass and the CNN's and ResNet's gradients were bit-identical), and
faithmap promises the same result for the same seed whatever the machine's load. So faithmap
never changes the thread count by itself; ``import faithmap`` sets ``OMP_WAIT_POLICY=PASSIVE``
when torch is not loaded yet and the variable is unset (libgomp reads it once, when torch loads
it; set later it has no effect), and :func:`advise_if_busy` logs the fix once when the machine
is oversubscribed and the waits may spin.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

WAIT_POLICY = "OMP_WAIT_POLICY"
"""The OpenMP environment variable read once when torch's OpenMP runtime loads."""

_log = logging.getLogger(__name__)
_advised: list[bool] = []


@dataclass(frozen=True)
class Load:
    """The machine's load: the 1-minute load average against the cores this process may use."""

    average: float
    cores: int

    @property
    def oversubscribed(self) -> bool:
        """More runnable processes, on average over the last minute, than usable cores."""
        return self.average > self.cores

    @property
    def quiet(self) -> bool:
        """At least half a core below :attr:`oversubscribed`: a 1-minute average needs over ten
        seconds of calm to fall that far, so two consecutive runs never see a spike, then quiet.
        """
        return self.average <= self.cores - 0.5


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows: no affinity call
        return max(1, os.cpu_count() or 1)


def machine_load() -> Load | None:
    """The current :class:`Load`, or ``None`` where the system has no load average (Windows)."""
    try:
        average = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return Load(average, usable_cores())


def is_oversubscribed() -> bool:
    """Whether the machine runs more processes than this process's cores (``False`` unknown)."""
    load = machine_load()
    return load is not None and load.oversubscribed


def is_quiet() -> bool:
    """Whether the load is clearly below the cores (:attr:`Load.quiet`; ``False`` unknown)."""
    load = machine_load()
    return load is not None and load.quiet


def waits_passively() -> bool:
    """Whether torch's OpenMP threads sleep while they wait (or there is only one thread)."""
    if torch.get_num_threads() <= 1:
        return True
    return os.environ.get(WAIT_POLICY, "").strip().upper() == "PASSIVE"


def advise_if_busy() -> Load | None:
    """Log, once per process, how to run faster when the machine is oversubscribed.

    Only when the waits may spin (:func:`waits_passively` is false): the message names the fix,
    ``OMP_WAIT_POLICY=PASSIVE`` set before torch is imported (or ``import faithmap`` before
    ``import torch``), or ``torch.set_num_threads(1)``. Returns the load when it advised.
    """
    load = machine_load()
    if _advised or load is None or not load.oversubscribed or waits_passively():
        return None
    _advised.append(True)
    _log.warning(
        "The machine is oversubscribed (load average %.1f on %d cores) and torch's %d OpenMP "
        "threads spin while they wait for each other, which can make every model call several "
        "times slower. Set OMP_WAIT_POLICY=PASSIVE in the environment before torch is imported "
        "(or import faithmap before torch), or call torch.set_num_threads(1).",
        load.average,
        load.cores,
        torch.get_num_threads(),
    )
    return load
