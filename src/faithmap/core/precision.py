"""Mixed precision: the model's forward pass under ``torch.autocast``, everything else in fp32.

``Model(net, precision="bf16")`` runs each call of the network under autocast, so its matrix
products and convolutions use bfloat16 (or float16) kernels. The inputs a method builds stay
float32, the outputs are cast back to float32 before any readout, and input gradients come back
in the inputs' dtype (autograd casts them at the autocast boundary), so scores, gradients and
every accumulation a method or metric does happen in float32: only the network's own arithmetic
is rounded more coarsely.

References
----------
Micikevicius et al., "Mixed Precision Training", ICLR 2018 (fp16 compute with fp32 masters).
Kalamkar et al., "A Study of BFLOAT16 for Deep Learning Training", arXiv:1905.12322, 2019.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch

from faithmap.errors import InvalidParameterError

Precision = Literal["fp32", "bf16", "fp16"]
"""The arithmetic of the model's forward pass: float32, or autocast to bfloat16 / float16."""

PRECISIONS: tuple[str, ...] = get_args(Precision)

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each reduced precision."""

HALF_DTYPES = (torch.bfloat16, torch.float16)


def check_precision(precision: object, where: str = "Model") -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else an :class:`InvalidParameterError`.

    Examples
    --------
    >>> check_precision("bf16")
    'bf16'
    """
    if precision not in PRECISIONS:
        raise InvalidParameterError(
            f"The 'precision' parameter of {where} must be one of {', '.join(PRECISIONS)} "
            f"(fp32: full precision; bf16/fp16: the model's forward pass under torch.autocast). "
            f"Got {precision!r} instead."
        )
    return precision  # type: ignore[return-value]  # checked above


@contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """Run the block under ``torch.autocast`` for ``precision`` on ``device`` (fp32: as is).

    Raises
    ------
    InvalidParameterError
        If autocast does not support ``precision`` on this device type (torch would only warn
        and run in fp32, which would mislabel every result).
    """
    if precision == "fp32":
        yield
        return
    dtype = AUTOCAST_DTYPES[precision]
    kind = device.type
    refusal = InvalidParameterError(
        f"precision={precision!r} is not supported on the {kind!r} device by torch "
        f"{torch.__version__}'s autocast. Use precision='fp32'"
        + (", or 'bf16' (CPU autocast supports bfloat16)." if kind == "cpu" else ", or 'bf16'.")
    )
    if not torch.amp.is_autocast_available(kind):
        raise refusal
    with warnings.catch_warnings():  # an unsupported dtype only warns and disables autocast
        warnings.simplefilter("ignore")
        context = torch.autocast(device_type=kind, dtype=dtype)
    with context:
        if not torch.is_autocast_enabled(kind) or torch.get_autocast_dtype(kind) != dtype:
            raise refusal
        yield


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if autocast left it in bfloat16 or float16, else as it is."""
    return tensor.float() if tensor.dtype in HALF_DTYPES else tensor
