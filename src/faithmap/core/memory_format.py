"""Memory format: NCHW (``"contiguous"``) or NHWC (``"channels_last"``) for the model's forward.

``Model(net, memory_format="channels_last")`` converts the network's 4-D weights and every 4-D
input batch to ``torch.channels_last`` for the duration of faithmap's calls only: the user's
module gets its own weight tensors back afterwards (same values, same strides), and inputs,
outputs and gradients a method sees are ordinary contiguous tensors. Convolution kernels that
prefer NHWC (cuDNN with tensor cores, oneDNN) then skip a layout conversion in every layer.
It changes only the order in which floats are summed, never what is computed.

References
----------
PyTorch, "(beta) Channels Last Memory Format in PyTorch" (tutorial), 2020.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from faithmap.errors import InvalidParameterError

MemoryFormat = Literal["contiguous", "channels_last"]
"""The layout of the model's 4-D weights and inputs during its forward pass."""

MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)


def check_memory_format(memory_format: object, where: str = "Model") -> MemoryFormat:
    """``memory_format`` if it is one of :data:`MEMORY_FORMATS`, else an error.

    Examples
    --------
    >>> check_memory_format("channels_last")
    'channels_last'
    """
    if memory_format not in MEMORY_FORMATS:
        raise InvalidParameterError(
            f"The 'memory_format' parameter of {where} must be one of "
            f"{', '.join(MEMORY_FORMATS)} (channels_last: NHWC weights and image batches, for "
            f"4-D image inputs only). Got {memory_format!r} instead."
        )
    return memory_format  # type: ignore[return-value]  # checked above


def refuse_non_module(model: object) -> None:
    """An error: ``channels_last`` needs a torch module whose weights it can convert."""
    raise InvalidParameterError(
        f"memory_format='channels_last' converts a torch module's 4-D weights and inputs; the "
        f"model is a {type(model).__name__}, not an nn.Module. Use memory_format='contiguous' "
        "(an ONNX Runtime session or a plain callable chooses its own layout)."
    )


def in_format(batch: Tensor, memory_format: MemoryFormat) -> Tensor:
    """``batch`` in ``memory_format``; ``channels_last`` applies to 4-D image batches only.

    Raises
    ------
    InvalidParameterError
        If ``memory_format`` is ``"channels_last"`` and ``batch`` is not ``(B, C, H, W)``:
        text, tabular rows, signals and token sequences have no channel axis to move.
    """
    if memory_format == "contiguous":
        return batch
    if batch.dim() != 4:
        raise InvalidParameterError(
            f"memory_format='channels_last' applies to 4-D image batches (B, C, H, W); the model "
            f"received a {batch.dim()}-D batch of shape {tuple(batch.shape)} (text, tabular rows, "
            "signals or token sequences). Use memory_format='contiguous' for this model."
        )
    return batch.contiguous(memory_format=torch.channels_last)


@contextmanager
def module_in_format(module: object, memory_format: MemoryFormat) -> Iterator[None]:
    """Run the block with ``module``'s 4-D parameters and buffers in ``memory_format``.

    Each converted tensor's ``.data`` is swapped for a channels-last copy and swapped back
    afterwards, even if the block raises: the user's parameters keep their identity, values and
    strides. ``"contiguous"`` changes nothing (the module is used as the user gave it).
    """
    if memory_format == "contiguous" or not isinstance(module, nn.Module):
        yield
        return
    tensors = [*module.parameters(), *module.buffers()]
    originals = [(t, t.data) for t in tensors if t.dim() == 4]
    try:
        for tensor, data in originals:
            tensor.data = data.contiguous(memory_format=torch.channels_last)
        yield
    finally:
        for tensor, data in originals:
            tensor.data = data
