"""How :class:`~faithmap.core.model.Model` runs many rows: in batches, streamed.

The mixin :class:`RowStreaming` holds the batch size of a job (the one given, or the fastest
measured, shared by every ``Model`` of the same module), the stream that runs rows through the
model at that size and backs off when memory runs out, and the three row jobs methods build on:
:meth:`~RowStreaming.score_rows`, :meth:`~RowStreaming.gradient_rows` and
:meth:`~RowStreaming.output_rows`, which generate their inputs batch by batch so no more than one
batch of inputs exists at a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from faithmap.core.batching import MAX_BATCH_BYTES, ROW_UNIT, fastest_batch_size, row_spans
from faithmap.core.detection.outputs import structured_total
from faithmap.core.memory import given_size_error, is_out_of_memory, stream
from faithmap.core.readout import Activation
from faithmap.core.targets import Target
from faithmap.core.validation import check_int
from faithmap.errors import ModelError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from faithmap.core.cost import Ledger
    from faithmap.core.measured_sizes import MeasuredSizes
    from faithmap.core.memory_format import MemoryFormat
    from faithmap.core.precision import Precision

_T = TypeVar("_T")

RowInputs = Callable[[Tensor, Tensor], Tensor]
"""Builds the input rows for pairs ``(sample index, perturbation index)``, both ``(B,)``."""

GradientSink = Callable[[Tensor, Tensor, Tensor, Tensor], None]
"""Receives ``(samples, indices, rows, gradients)`` of one batch."""
OutputSink = Callable[[Tensor, Tensor, Tensor], None]
"""Receives ``(samples, indices, outputs)`` of one batch."""


def _input_gradient(scores: Tensor, rows: Tensor) -> Tensor:
    """Gradient of the summed ``scores`` with respect to ``rows``; an error without autograd."""
    if scores.grad_fn is None:
        raise ModelError(
            "The model's output does not depend on its input through autograd (it may detach, "
            "use numpy, or run under torch.no_grad). Gradient methods cannot explain it; use a "
            "perturbation method such as occlusion or rise."
        )
    with torch.enable_grad():  # the caller may be under torch.no_grad (Captum's metrics are)
        total = scores.sum()
    (gradient,) = torch.autograd.grad(total, rows)
    return gradient.contiguous()  # memory_format="channels_last" gives NHWC-strided gradients


class RowStreaming:
    """The batched, streamed calls of :class:`~faithmap.core.model.Model` (its base class)."""

    if TYPE_CHECKING:  # what Model provides
        batch_size: int | None
        ledger: Ledger
        structured: str | None
        precision: Precision
        memory_format: MemoryFormat
        _sizes: MeasuredSizes

        @property
        def device(self) -> torch.device | None: ...

        @property
        def is_differentiable(self) -> bool: ...

        def preserved(self, *, for_gradients: bool = False) -> AbstractContextManager[None]: ...

        def _call(self, batch: Tensor) -> Tensor: ...

        def activate(self, output: Tensor, activation: Activation) -> Tensor: ...

    @property
    def _speed_kind(self) -> str:
        """What besides the input decides the speed, for the batch-size table: the precision,
        and the memory format when not contiguous (``"fp32+channels_last"``)."""
        if self.memory_format == "contiguous":
            return self.precision
        return f"{self.precision}+{self.memory_format}"

    def _batch_size_for(self, sample: Tensor, gradients: bool, rows: int) -> int:
        """The batch size for a job of ``rows`` rows shaped like ``sample``.

        Sizes are measured only up to the job's size (no point timing 1024 rows for a job of
        33); a later, larger job measures again up to its own size.
        """
        if self.batch_size is not None:
            return self.batch_size
        return self._sizes.size_for(
            sample,
            gradients,
            rows,
            lambda sizes: self._measure(sample, gradients, sizes),
            self._speed_kind,
        )

    def _measure(self, sample: Tensor, gradients: bool, candidates: tuple[int, ...]) -> int:
        """Time the model on ``sample`` at each of ``candidates`` and return the fastest size."""
        started = time.perf_counter()

        def forward(batch: Tensor) -> object:
            with torch.inference_mode():
                return self._call(batch)

        def forward_backward(batch: Tensor) -> object:
            rows = batch.detach().requires_grad_(True)
            with torch.enable_grad():
                output = self._call(rows)
            probe = output[:, 0] if self.structured is None else structured_total(output)
            return _input_gradient(probe, rows)

        with self.preserved(for_gradients=gradients):
            size, _ = fastest_batch_size(
                forward_backward if gradients else forward, sample, candidates=candidates
            )
        self.ledger.calibration_seconds += time.perf_counter() - started
        return size

    def _row_unit(self, sample: Tensor) -> int:
        """Rows per unit of a call (:func:`~faithmap.core.batching.row_spans`): ``ROW_UNIT``
        for a measured size, unless that many rows exceed the memory cap; 1 for a given size."""
        row_bytes = sample[:1].numel() * sample.element_size()
        if self.batch_size is None and ROW_UNIT * row_bytes <= MAX_BATCH_BYTES:
            return ROW_UNIT
        return 1

    def _stream(
        self,
        sample: Tensor,
        gradients: bool,
        total: int,
        size: int,
        attempt: Callable[[int, int], _T],
    ) -> Iterator[_T]:
        """``attempt(start, stop)`` over ``total`` rows, ``size`` at a time, backing off when
        memory runs out (see :func:`faithmap.core.memory.stream`): a measured size is halved and
        the ceiling remembered for ``sample``'s shape; a size the user gave is an error."""

        def lowered(smaller: int) -> None:
            self._sizes.lower(sample, gradients, smaller, self._speed_kind)

        device = self.device or sample.device
        if self.batch_size is not None:
            given = self.batch_size

            def guarded(start: int, stop: int) -> _T:
                try:
                    return attempt(start, stop)
                except Exception as err:
                    if is_out_of_memory(err):
                        raise given_size_error(given, device) from err
                    raise

            return stream(total, size, 1, guarded, spans=_spans, on_back_off=lowered, device=device)
        unit = self._row_unit(sample)
        return stream(total, size, unit, attempt, spans=_spans, on_back_off=lowered, device=device)

    @staticmethod
    def _pairs(
        start: int, stop: int, per_sample: int, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """Pairs (sample, perturbation) of rows ``start:stop`` in sample-major order."""
        rows = torch.arange(start, stop, device=device)
        return rows // per_sample, rows % per_sample

    def score_rows(
        self,
        n_samples: int,
        per_sample: int,
        make_inputs: RowInputs,
        target: Target,
        *,
        activation: Activation = "softmax",
        device: torch.device,
    ) -> Tensor:
        """Target scores of ``per_sample`` generated inputs for each sample: ``(N, per_sample)``.

        ``make_inputs(samples, indices)`` builds the rows of one batch on ``device``; rows are
        generated batch by batch, so no more than one batch of inputs exists at a time. A target
        whose ``select`` returns several values per row ``(B, K)`` gives ``(N, per_sample, K)``.
        """
        check_int(per_sample, "per_sample", "Model.score_rows", low=1)
        probe = _probe(make_inputs, device)
        total = n_samples * per_sample
        size = self._batch_size_for(probe, gradients=False, rows=total)

        def attempt(start: int, stop: int) -> Tensor:
            samples, indices = self._pairs(start, stop, per_sample, device)
            output = self.activate(self._call(make_inputs(samples, indices)), activation)
            self.ledger.forward += samples.shape[0]
            return target.select(output, samples).to(device)

        with self.preserved(), torch.inference_mode():
            chunks = list(self._stream(probe, False, total, size, attempt))
        scores = torch.cat(chunks)
        return scores.view(n_samples, per_sample, *scores.shape[1:]).clone()

    def gradient_rows(
        self,
        n_samples: int,
        per_sample: int,
        make_inputs: RowInputs,
        target: Target,
        consume: GradientSink,
        *,
        activation: Activation = "logits",
        device: torch.device,
    ) -> None:
        """Input gradients of the target score, batch by batch.

        Calls ``consume(samples, indices, rows, gradients)`` for each batch, where ``rows`` are
        the inputs ``make_inputs`` built and ``gradients`` the gradient of each row's target
        score with respect to it. One forward and one backward pass are counted per row.
        """
        if not self.is_differentiable:
            raise _no_gradients()
        check_int(per_sample, "per_sample", "Model.gradient_rows", low=1)
        probe = _probe(make_inputs, device)
        total = n_samples * per_sample
        size = self._batch_size_for(probe, gradients=True, rows=total)

        def attempt(start: int, stop: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            samples, indices = self._pairs(start, stop, per_sample, device)
            rows = make_inputs(samples, indices).detach().requires_grad_(True)
            with torch.enable_grad():
                output = self.activate(self._call(rows), activation)
                scores = target.select(output, samples)
            gradients = _input_gradient(scores, rows)
            self.ledger.forward += rows.shape[0]
            self.ledger.backward += rows.shape[0]
            return samples, indices, rows.detach(), gradients

        with self.preserved(for_gradients=True):
            for samples, indices, rows, gradients in self._stream(
                probe, True, total, size, attempt
            ):
                consume(samples, indices, rows, gradients)

    def output_rows(
        self,
        n_samples: int,
        per_sample: int,
        make_inputs: RowInputs,
        consume: OutputSink,
        *,
        backward: bool = False,
        activation: Activation = "logits",
        device: torch.device,
    ) -> None:
        """The model's outputs for generated rows, batch by batch, for methods that look inside.

        Calls ``consume(samples, indices, outputs)`` right after each batch's forward pass, so
        a method can read what its forward hooks captured in that pass (a layer's activation).
        With ``backward=True`` the pass runs with autograd enabled while neither the rows nor
        the parameters require grad: ``consume`` takes the gradients it needs of the outputs
        with respect to tensors a hook marked as requiring grad, and one backward pass per row
        is counted. Otherwise the pass runs in inference mode. One forward pass per row is
        counted either way.
        """
        if backward and not self.is_differentiable:
            raise _no_gradients()
        check_int(per_sample, "per_sample", "Model.output_rows", low=1)
        probe = _probe(make_inputs, device)
        total = n_samples * per_sample
        size = self._batch_size_for(probe, gradients=backward, rows=total)

        def attempt(start: int, stop: int) -> None:
            samples, indices = self._pairs(start, stop, per_sample, device)
            rows = make_inputs(samples, indices).detach()
            output = self.activate(self._call(rows), activation)
            self.ledger.forward += rows.shape[0]
            try:  # what consume did cannot be undone: running out of memory here is no retry
                consume(samples, indices, output)
            except Exception as err:
                if is_out_of_memory(err):
                    raise ModelError(
                        f"The method ran out of memory in its own work on a batch of "
                        f"{rows.shape[0]} rows, after the model's pass. Give a smaller batch_size."
                    ) from err
                raise
            if backward:
                self.ledger.backward += rows.shape[0]

        grad_mode = torch.enable_grad() if backward else torch.inference_mode()
        with self.preserved(for_gradients=backward), grad_mode:
            for _ in self._stream(probe, backward, total, size, attempt):
                pass


def _probe(make_inputs: RowInputs, device: torch.device) -> Tensor:
    """One row of ``make_inputs`` (sample 0, index 0): what the batch-size search measures."""
    zero = torch.zeros(1, dtype=torch.long, device=device)
    return make_inputs(zero, zero)


def _no_gradients() -> ModelError:
    """The refusal of a gradient pass through a model that has no autograd."""
    return ModelError(
        "This method needs gradients, but the model is a plain callable, not an nn.Module with "
        "autograd. Use a perturbation method (occlusion, rise) or wrap a differentiable torch "
        "module."
    )


def _spans(total: int, size: int, unit: int) -> Iterator[tuple[int, int]]:
    return row_spans(total, size, unit=unit)
