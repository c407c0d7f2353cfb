"""Which device runs the model: ``cpu``, ``cuda[:i]``, ``mps`` or ``auto``, checked up front.

A device that is not available is an error naming the devices that are, never a silent fall
back to the CPU: a benchmark that meant to time a GPU and quietly ran on the CPU reports
numbers of the wrong machine.
"""

from __future__ import annotations

import torch

from faithmap.errors import InvalidParameterError

DEVICE_CHOICES = ("cpu", "cuda", "cuda:I", "mps", "auto")
"""What a device may be named (``cuda:I`` is the I-th CUDA device)."""


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and bool(backend.is_available())


def available_devices() -> list[str]:
    """The devices this process can run a model on, e.g. ``["cpu", "cuda:0", "cuda:1"]``.

    Examples
    --------
    >>> available_devices()[0]
    'cpu'
    """
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def resolve_device(spec: str | torch.device, where: str = "device") -> torch.device:
    """The device ``spec`` names, checked to be available here.

    ``"auto"`` is the first CUDA device if there is one, else MPS if available, else the CPU.
    ``"cuda"`` is the current CUDA device.

    Raises
    ------
    InvalidParameterError
        If ``spec`` is not a device name, or names a device this machine does not have (the
        message lists those it has).

    Examples
    --------
    >>> resolve_device("cpu"), resolve_device("auto").type in ("cpu", "cuda", "mps")
    (device(type='cpu'), True)
    """
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError) as err:
        raise InvalidParameterError(
            f"The {where} must be one of {', '.join(DEVICE_CHOICES)}. Got {spec!r} instead."
        ) from err
    have = available_devices()
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device() if device.index is None else device.index
        if index < torch.cuda.device_count():
            return torch.device("cuda", index)
    elif device.type == "mps" and _mps_available():
        return torch.device("mps")
    elif device.type not in ("cuda", "mps"):
        raise InvalidParameterError(
            f"The {where} must be one of {', '.join(DEVICE_CHOICES)}. Got {spec!r} instead."
        )
    raise InvalidParameterError(
        f"The {where} {str(spec)!r} is not available on this machine (torch {torch.__version__}"
        f"{'' if torch.version.cuda else ', a CPU-only build'}). Available: {', '.join(have)}. "
        "Use one of these, or 'auto' for the best available."
    )
