"""Writing the explanations of many batches as one file, holding one batch at a time."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import torch
from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.errors import ShapeError

SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
"""The safetensors name of each dtype an explanation's tensors can have."""
COPY_BLOCK = 16 * 2**20


class ExplanationStream:
    """One :meth:`Explanation.save` file for explanations added batch by batch.

    Each batch's attributions go to a temporary file in ``folder`` as they come, so memory
    holds one batch, not the folder; :meth:`close` writes the file, its safetensors header and
    then the attributions copied behind it. The file reads back with :meth:`Explanation.load`
    as the explanation of all batches in order: their attributions and targets concatenated,
    costs summed, the method, configuration and model of the first batch, and the rankings if
    every batch has one of the same width. Use it as a context manager; a stream left by an
    error writes nothing.
    """

    def __init__(self, folder: str | Path) -> None:
        self._raw = tempfile.NamedTemporaryFile(  # noqa: SIM115  closed in close() or __exit__
            dir=folder, prefix=".faithmap-stream-", delete=False
        )
        self._first: Explanation | None = None
        self._rows = 0
        self._targets: list[Tensor] | None = []
        self._rankings: list[Tensor] | None = []
        self._cost: Cost | None = None

    def __enter__(self) -> ExplanationStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._raw.closed:
            self._raw.close()
        Path(self._raw.name).unlink(missing_ok=True)

    @property
    def samples(self) -> int:
        """How many samples were added."""
        return self._rows

    @property
    def method(self) -> str:
        """The method of the explanations added."""
        if self._first is None:
            raise ShapeError("Nothing was added to the stream: add an explanation first.")
        return self._first.method

    @property
    def cost(self) -> Cost:
        """The cost of every explanation added, in total."""
        return self._cost if self._cost is not None else Cost(0, 0, 0.0)

    def add(self, explanation: Explanation) -> None:
        """Append one batch's explanation (same method and map shape as the first)."""
        values = explanation.attributions.detach().cpu().contiguous()
        self._cost = explanation.cost if self._cost is None else self._cost + explanation.cost
        if self._first is None:
            self._first = explanation
        else:
            first = self._first.attributions
            if values.shape[1:] != first.shape[1:] or values.dtype != first.dtype:
                raise ShapeError(
                    "Every batch of one stream must have the same map shape and dtype. Got a "
                    f"batch of shape {tuple(values.shape)} ({values.dtype}) after batches of "
                    f"shape {tuple(first.shape[1:])} ({first.dtype})."
                )
        self._raw.write(values.view(-1).view(torch.uint8).numpy().data)
        self._rows += int(values.shape[0])
        self._targets = _extended(self._targets, explanation.target)
        self._rankings = _extended(self._rankings, explanation.ranking)

    def close(self, path: str | Path) -> Path:
        """Write the file at ``path`` and return it."""
        if self._first is None or self._cost is None:
            raise ShapeError("Nothing was added to the stream: add an explanation first.")
        self._raw.close()
        first = self._first
        summary = replace(first, cost=self._cost)
        shape = [self._rows, *first.attributions.shape[1:]]
        entries: list[tuple[str, Tensor | None, list[int], torch.dtype]] = [
            ("attributions", None, shape, first.attributions.dtype)
        ]
        for name, parts in (("target", self._targets), ("ranking", self._rankings)):
            if parts:
                joined = torch.cat(parts).contiguous()
                entries.append((name, joined, list(joined.shape), joined.dtype))
        header: dict[str, object] = {"__metadata__": summary.metadata()}
        offset = 0
        for name, _, size, dtype in entries:
            length = _numel(size) * torch.empty((), dtype=dtype).element_size()
            header[name] = {
                "dtype": SAFETENSORS_DTYPES[dtype],
                "shape": size,
                "data_offsets": [offset, offset + length],
            }
            offset += length
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        path = Path(path)
        with path.open("wb") as out:
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            with open(self._raw.name, "rb") as raw:
                shutil.copyfileobj(raw, out, COPY_BLOCK)
            for _, tensor, _, _ in entries[1:]:
                assert tensor is not None  # every entry after the attributions is in memory
                out.write(tensor.view(-1).view(torch.uint8).numpy().data)
        Path(self._raw.name).unlink(missing_ok=True)
        return path


def _extended(parts: list[Tensor] | None, value: Tensor | None) -> list[Tensor] | None:
    """``parts`` with ``value`` appended; ``None`` once a batch has none or another width."""
    if parts is None or value is None:
        return None
    value = value.detach().cpu().contiguous()
    if parts and value.shape[1:] != parts[0].shape[1:]:
        return None
    return [*parts, value]


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
