"""The per-user cache file of measured batch sizes, shared across processes.

For an ``nn.Module``, measurements are kept in a JSON file (:func:`cache_file`) keyed by the
module's architecture (:func:`fingerprint`), input shape, dtype, device, pass kind and torch
version, so another process running the same architecture reuses them. The file is safe to
delete and is never the reason a run fails: a missing, unreadable or corrupt file reads as
empty, and a failed write is logged and ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from types import CodeType
from typing import Any

import torch
from torch import nn

CACHE_ENV = "FAITHMAP_CACHE_DIR"
"""Environment variable naming the cache folder; ``off`` (or ``0``, ``false``, ``none``) disables
the cache file."""
CACHE_FILE = "batch_sizes.json"
CACHE_VERSION = 1
MAX_CACHE_ENTRIES = 512
_OFF = {"off", "0", "false", "no", "none", "disabled"}

_log = logging.getLogger(__name__)


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


def cache_key(model_fingerprint: str, key: tuple[Any, ...]) -> str:
    shape, dtype, device, gradients, *precision = key  # precision only when not fp32
    kind = "forward_backward" if gradients else "forward"
    device_name = _device_name(torch.device(device))
    version = f"torch{torch.__version__}"
    autocast = "".join(f"|{p}" for p in precision)
    return f"{model_fingerprint}|{list(shape)}|{dtype}|{device_name}|{kind}{autocast}|{version}"


def read_cache(path: Path) -> dict[str, Any]:
    """The cache's entries; an empty table if the file is missing, unreadable or corrupt."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def entry(raw: object) -> tuple[int, int, dict[int, float]] | None:
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


def write_cache(
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
        entries = {k: v for k, v in read_cache(path).items() if entry(v) is not None}
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
