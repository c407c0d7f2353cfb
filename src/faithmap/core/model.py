"""``Model``: the one way faithmap calls a model.

It wraps an ``nn.Module`` or a plain callable, streams batches of inputs through it at one
measured (or given) ``batch_size``, applies the output activation, reads the target's score,
takes input gradients when the model supports autograd, counts every pass in a cost ledger, and
leaves the user's module exactly as it found it (training flags, ``requires_grad``), even when
the model raises. The batched, streamed calls (batch sizes, out-of-memory back-off and the row
jobs ``score_rows``, ``gradient_rows``, ``output_rows``) are its base,
:class:`~faithmap.core.row_stream.RowStreaming`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor, nn

from faithmap.core.batching import MeasuredSizes
from faithmap.core.cost import Ledger
from faithmap.core.detection.outputs import not_class_scores, structured_output
from faithmap.core.devices import resolve_device
from faithmap.core.memory import is_out_of_memory
from faithmap.core.memory_format import (
    MemoryFormat,
    check_memory_format,
    in_format,
    module_in_format,
    refuse_non_module,
)
from faithmap.core.onnx import OnnxSession, open_session
from faithmap.core.precision import Precision, autocast, check_precision, full_precision
from faithmap.core.preprocessing import Preprocessing, as_preprocessing
from faithmap.core.readout import Activation, Outputs, check_class_scores, read_out
from faithmap.core.row_stream import GradientSink as GradientSink
from faithmap.core.row_stream import OutputSink as OutputSink
from faithmap.core.row_stream import RowInputs as RowInputs
from faithmap.core.row_stream import RowStreaming
from faithmap.core.targets import Target, TargetLike, resolve_target
from faithmap.core.validation import check_choice, check_int
from faithmap.errors import FaithmapError, InvalidParameterError, ModelError


def _is_callable_target(target: TargetLike) -> bool:
    """A callable, or one callable per sample."""
    if callable(target) and not isinstance(target, Tensor):
        return True
    return isinstance(target, list | tuple) and len(target) > 0 and all(callable(t) for t in target)


class Model(RowStreaming):
    """A model as faithmap sees it.

    Parameters
    ----------
    model : nn.Module or callable
        Maps a batch ``(B, ...)`` to outputs ``(B, ...)``: class scores ``(B, C)`` for a
        classifier, any shape for other models (a detector's ``(B, K, A)``) when the target is
        a callable reading one score per row. A callable may return a numpy array.
    batch_size : int or None, default=None
        Rows per model call. ``None`` measures the fastest size on the first call for each
        input shape (see :func:`faithmap.core.batching.fastest_batch_size`); the measurement is
        kept for the module, so later ``Model`` objects of the same module reuse it.
    outputs : {"logits", "probabilities", "log_probabilities"}, default="logits"
        What the model returns. A probability model gets no second softmax; its ``"logits"``
        readout is the probabilities themselves and ``"log_odds"`` is ``log p - log(1 - p)``.
    preprocessing : Preprocessing, mapping or None, default=None
        What the network expects (size, channel order, normalisation), applied inside every
        call so inputs, removals and attributions stay in the user's pixel space.
    eval_mode : bool, default=True
        Put an ``nn.Module`` in eval mode while faithmap uses it (and restore it after).
    precision : {"fp32", "bf16", "fp16"}, default="fp32"
        The arithmetic of the model's forward pass: ``"bf16"``/``"fp16"`` run it under
        ``torch.autocast`` (see :mod:`faithmap.core.precision`); inputs, outputs, gradients and
        every score a method or metric accumulates stay float32.
    device : str, torch.device or None, default=None
        Move the module there (``module.to(device)``): ``"cpu"``, ``"cuda[:i]"``, ``"mps"`` or
        ``"auto"`` (see :func:`~faithmap.core.devices.resolve_device`; an unavailable device is
        an error). ``None`` leaves it where it is. Inputs follow the model's device.
    memory_format : {"contiguous", "channels_last"}, default="contiguous"
        The layout of the module's 4-D weights and of 4-D image batches during faithmap's calls
        (see :mod:`faithmap.core.memory_format`); the user's module gets its own weights back
        afterwards. ``"channels_last"`` needs an ``nn.Module`` and 4-D image inputs.

    Examples
    --------
    >>> import torch
    >>> model = Model(torch.nn.Linear(4, 3), batch_size=8)
    >>> model.outputs(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Any],
        *,
        batch_size: int | None = None,
        outputs: Outputs = "logits",
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        eval_mode: bool = True,
        precision: Precision = "fp32",
        device: str | torch.device | None = None,
        memory_format: MemoryFormat = "contiguous",
    ) -> None:
        if isinstance(model, Model):
            raise InvalidParameterError(
                "This is already a faithmap.Model; pass it as it is (or use Model.wrap)."
            )
        if not callable(model):
            raise ModelError(
                "faithmap.Model needs an nn.Module or a callable mapping a batch to outputs. "
                f"Got {type(model).__name__} instead."
            )
        if batch_size is not None:
            check_int(batch_size, "batch_size", "Model", low=1)
        self.module = model
        self.batch_size = batch_size
        check_choice(outputs, "outputs", "Model", get_args(Outputs))
        self.outputs_kind: Outputs = outputs
        self.preprocessing = as_preprocessing(preprocessing)
        self.eval_mode = eval_mode
        self.ledger = Ledger()
        self.num_outputs: int | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.structured: str | None = None  # what a detector's dict or list output is
        self.signal_images = False
        self._sizes = MeasuredSizes.of(model)
        self.precision: Precision = "fp32"
        self.memory_format: MemoryFormat = "contiguous"
        self.to(device, precision=precision, memory_format=memory_format)

    def to(
        self,
        device: str | torch.device | None = None,
        *,
        precision: Precision | None = None,
        memory_format: MemoryFormat | None = None,
    ) -> Model:
        """Move the wrapped module to ``device`` (checked to be available) and/or set the
        ``precision`` and ``memory_format`` of its forward pass; return this model. ``None``
        changes nothing.

        A plain callable or ONNX session cannot be moved: only ``"cpu"`` is accepted for it, an
        ONNX session only ``precision="fp32"``, and either only ``memory_format="contiguous"``.
        """
        if memory_format is not None:
            checked = check_memory_format(memory_format)
            if checked != "contiguous" and not isinstance(self.module, nn.Module):
                refuse_non_module(self.module)
            self.memory_format = checked
        if precision is not None:
            if precision != "fp32" and isinstance(self.module, OnnxSession):
                raise InvalidParameterError(
                    f"precision={precision!r} runs a torch module's forward pass under autocast; "
                    "an ONNX Runtime session computes in its graph's own dtypes. Use "
                    "precision='fp32', or export the graph in the precision you want."
                )
            self.precision = check_precision(precision)
        if device is None:
            return self
        target = resolve_device(device, "device of Model")
        if isinstance(self.module, nn.Module):
            self.module.to(target)
        elif target.type != "cpu":
            raise InvalidParameterError(
                f"Model(device={str(device)!r}): the model is a {type(self.module).__name__}, not "
                "a torch module, so faithmap cannot move it. Put it on the device yourself (an "
                "ONNX session: providers=['CUDAExecutionProvider']) and leave device out."
            )
        return self

    @classmethod
    def wrap(cls, model: ModelLike) -> Model:
        """``model`` itself if it is a :class:`Model`, else a new one wrapping it."""
        return model if isinstance(model, Model) else cls(model)

    def like(self, module: nn.Module | Callable[[Tensor], Any]) -> Model:
        """A :class:`Model` of another network declared as this one (outputs, preprocessing,
        batch size, eval mode): for metrics that run a changed copy of the model."""
        return Model(
            module,
            batch_size=self.batch_size,
            outputs=self.outputs_kind,
            preprocessing=self.preprocessing,
            eval_mode=self.eval_mode,
            precision=self.precision,
            memory_format=self.memory_format if isinstance(module, nn.Module) else "contiguous",
        )

    def for_signal_images(self) -> Model:
        """This model, fed 1-D signals ``(B, C, T)`` as images of height one ``(B, C, 1, T)``.

        Image methods and metrics run on signals through this view: every call drops the unit
        height before the model sees the batch. It shares the module, the cost ledger and the
        measured batch sizes with this model.
        """
        twin = self.like(self.module)
        twin.ledger, twin._sizes, twin.signal_images = self.ledger, self._sizes, True
        return twin

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        batch_size: int | None = None,
        outputs: Outputs = "logits",
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        providers: Sequence[str] | None = None,
        extra_inputs: Mapping[str, Any] | None = None,
        output: int | str = 0,
    ) -> Model:
        """A model running the ONNX file ``path`` with ONNX Runtime.

        See :func:`faithmap.core.onnx.open_session` for ``path``, ``providers``,
        ``extra_inputs`` (the graph's other inputs, given as constants) and ``output`` (which
        graph output is explained); ``outputs`` and ``preprocessing`` are as for
        :class:`Model`. The session is called with numpy arrays of the dtype its graph declares.
        """
        session = open_session(path, providers=providers, extra_inputs=extra_inputs, output=output)
        return cls(session, batch_size=batch_size, outputs=outputs, preprocessing=preprocessing)

    @property
    def measured_batch_sizes(self) -> dict[tuple[Any, ...], tuple[int, int]]:
        """The batch sizes measured so far: ``(size, largest size timed)`` by input shape,
        dtype, device and pass kind (shared by every ``Model`` of the same module)."""
        return self._sizes.table

    def record(self) -> dict[str, Any]:
        """What was declared about the model, JSON-friendly: stored with explanations and in the
        benchmark's config hash."""
        return {
            "outputs": self.outputs_kind,
            "preprocessing": self.preprocessing.record(),
            "precision": self.precision,
            "memory_format": self.memory_format,
        }

    def __repr__(self) -> str:
        name = type(self.module).__name__
        declared = (
            ""
            if self.preprocessing.is_identity and self.preprocessing.size is None
            else (f", preprocessing={self.preprocessing!r}")
        )
        if self.precision != "fp32":
            declared += f", precision={self.precision!r}"
        if self.memory_format != "contiguous":
            declared += f", memory_format={self.memory_format!r}"
        return (
            f"Model({name}, batch_size={self.batch_size}, outputs={self.outputs_kind!r}{declared})"
        )

    @property
    def device(self) -> torch.device | None:
        """The device of the module's parameters, or ``None`` for a callable without any."""
        if isinstance(self.module, nn.Module):
            tensors = itertools.chain(self.module.parameters(), self.module.buffers())
            first = next(tensors, None)
            return first.device if first is not None else None
        return None

    @property
    def is_differentiable(self) -> bool:
        """Whether gradients can be taken through the model (an ``nn.Module``)."""
        return isinstance(self.module, nn.Module)

    # ----------------------------------------------------------------- state
    @contextmanager
    def preserved(self, *, for_gradients: bool = False) -> Iterator[None]:
        """Use the model inside the block and restore every flag it had afterwards.

        Sets eval mode (if ``eval_mode``), the declared ``memory_format`` of the 4-D weights
        and, for input gradients, turns off the parameters' ``requires_grad`` so no parameter
        gradient is computed; restores all three even if the block raises.
        """
        module = self.module
        if not isinstance(module, nn.Module):
            yield
            return
        training = [(m, m.training) for m in module.modules()]
        grads = [(p, p.requires_grad) for p in module.parameters()]
        try:
            if self.eval_mode:
                module.eval()
            if for_gradients:
                for parameter, _ in grads:
                    parameter.requires_grad_(False)
            with module_in_format(module, self.memory_format):
                yield
        finally:
            for submodule, flag in training:
                submodule.training = flag
            for parameter, flag in grads:
                parameter.requires_grad_(flag)

    # -------------------------------------------------------------- forward
    def _call(self, batch: Tensor) -> Tensor:
        """One call of the wrapped model on a preprocessed batch, its output checked.

        Any output shape with one row per sample is accepted (a ``(B,)`` output becomes
        ``(B, 1)``); whether it can be read as class scores is checked where a class is read.
        A detector's structured outputs (a ``ModelOutput``, one dict per image) are passed on
        as they are, for a callable target (see :mod:`faithmap.core.detection.outputs`).
        """
        if self.signal_images and batch.dim() == 4 and batch.shape[2] == 1:
            batch = batch.squeeze(2)
        try:
            network_input = in_format(self.preprocessing(batch), self.memory_format)
            with autocast(self.precision, batch.device):
                output = self.module(network_input)
        except FaithmapError:
            raise
        except Exception as err:
            if is_out_of_memory(err):
                raise  # the caller backs off (see faithmap.core.memory)
            raise ModelError(
                f"The model raised {type(err).__name__} on a batch of shape {tuple(batch.shape)}: "
                f"{err}. Check that the model accepts inputs of this shape and dtype (and the "
                "declared preprocessing, if any)."
            ) from err
        if isinstance(output, np.ndarray):
            output = torch.from_numpy(output).to(batch.device)
        if not isinstance(output, Tensor):
            self.structured = structured_output(output, batch.shape[0])
            self.output_shape, self.num_outputs = None, None
            return output  # type: ignore[no-any-return]  # read by callable targets only
        self.structured = None
        if output.dim() == 1:
            output = output.unsqueeze(1)
        if output.dim() == 0 or output.shape[0] != batch.shape[0]:
            raise ModelError(
                f"The model must return one output row per sample: shape ({batch.shape[0]}, ...) "
                f"for a batch of {batch.shape[0]}. Got {tuple(output.shape)} instead."
            )
        if not output.is_floating_point():
            output = output.float()
        output = full_precision(output)  # autocast's bf16/fp16 outputs: read out in fp32
        self.output_shape = tuple(output.shape[1:])
        self.num_outputs = int(output.shape[1]) if output.dim() == 2 else None
        return output

    def check_class_scores(self, output_shape: tuple[int, ...] | None, reading: str) -> None:
        """Raise unless outputs of ``(B, *output_shape)`` are class scores ``(B, C)``."""
        check_class_scores(output_shape, reading)

    def activate(self, output: Tensor, activation: Activation) -> Tensor:
        """The readout of raw outputs (:func:`faithmap.core.readout.read_out`) by the declared
        ``outputs``: probabilities never get a second softmax."""
        raw: object = output
        if not isinstance(raw, Tensor):  # a detector's dict or list, for a callable target
            if activation != "logits":
                what = self.structured or type(raw).__name__
                raise not_class_scores(what, f"the {activation!r} readout")
            return output
        return read_out(output, activation, self.outputs_kind)

    def outputs(self, inputs: Tensor, *, activation: Activation = "logits") -> Tensor:
        """The model's outputs for a batch, computed in batches, on ``inputs.device``."""
        size = self._batch_size_for(inputs, gradients=False, rows=inputs.shape[0])
        device = self.device or inputs.device

        def attempt(start: int, stop: int) -> Tensor:
            batch = inputs[start:stop].to(device)
            output = self._call(batch)
            if self.structured is not None:
                raise not_class_scores(self.structured, "Model.outputs (nor a predicted class)")
            self.ledger.forward += batch.shape[0]
            return self.activate(output, activation).to(inputs.device)

        with self.preserved(), torch.inference_mode():
            chunks = list(self._stream(inputs, False, inputs.shape[0], size, attempt))
        return torch.cat(chunks).clone()

    def predict(self, inputs: Tensor) -> Tensor:
        """The predicted class of each sample, ``(N,)`` int64 (class-score outputs only)."""
        outputs = self.outputs(inputs)
        self.check_class_scores(tuple(outputs.shape[1:]), "the predicted class")
        return outputs.argmax(dim=1)

    def target(self, inputs: Tensor, target: TargetLike) -> Target:
        """Resolve ``target`` for the batch ``inputs`` (a forward pass only if it is ``None``)."""
        if self.output_shape is None and target is not None and not _is_callable_target(target):
            with self.preserved(), torch.inference_mode():
                self._call(inputs[:1].to(self.device or inputs.device))
        reading = "the predicted class" if target is None else "a class target"
        if self.structured is not None and not _is_callable_target(target):
            raise not_class_scores(self.structured, reading)
        if self.output_shape is not None and not _is_callable_target(target):
            self.check_class_scores(self.output_shape, reading)
        return resolve_target(
            target, inputs.shape[0], self.num_outputs, lambda: self.predict(inputs), inputs.device
        )


ModelLike: TypeAlias = Model | nn.Module | Callable[[Tensor], Any]
"""What every function that runs a model accepts: a :class:`Model`, a module or a callable."""
