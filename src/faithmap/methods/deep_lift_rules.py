"""DeepLIFT's Rescale rule as modified gradients, shared by DeepLIFT and DeepSHAP.

DeepLIFT (Shrikumar et al. 2017) explains ``f(x) - f(r)`` for a reference ``r``. Every neuron
gets a *multiplier* ``m = dC / d(delta)``, and multipliers chain like gradients (their eq. 3),
so one backward pass carries them down once each non-linearity's gradient is replaced by its
rule; linear layers keep their true gradient. The attribution is ``(x - r) * m`` at the input,
and it sums to ``f(x) - f(r)`` (summation-to-delta).

* Element-wise non-linearities (ReLU, sigmoid, tanh, GELU ...) take the Rescale rule
  ``m_in = m_out * delta_out / delta_in``, and the plain gradient where
  ``|delta_in| < eps`` (the limit of the ratio).
* Max pooling: with ``M = max(y, y_r)`` per window, the window's change ``y - y_r`` is split
  into ``M - y_r``, handed to the input's maximum, and ``y - M`` (zero or negative), handed
  to the reference's maximum; each input position's multiplier is its share over its own
  ``delta_in``. This is Captum's rule, with shares *added* where overlapping windows pick the
  same position (Captum's un-pooling keeps one of them).

One explanation runs in two phases (:class:`Propagation`): the references' activations at
every non-linear module are recorded once per distinct reference, then the inputs' backward
pass reads them by row. Non-linear operations the rules cannot see (``F.relu`` or
``torch.sigmoid`` in ``forward``, a product of two activations, softmax, LayerNorm) are found
by walking the autograd graph of every forward pass: each one raises :class:`ModelError`
instead of leaving a silently wrong map, as does batch norm or dropout in training mode.

References
----------
Shrikumar, Greenside, Kundaje, "Learning Important Features Through Propagating Activation
Differences", ICML 2017.

Ancona, Ceolini, Öztireli, Gross, "Towards better understanding of gradient-based attribution
methods for Deep Neural Networks", ICLR 2018 (DeepLIFT-Rescale as a modified gradient).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from faithmap.core.model import Model
from faithmap.core.targets import Target
from faithmap.errors import ModelError, TargetError

EPSILON = 1e-10
"""Below this ``|delta_in|`` a rule takes the plain gradient (Captum's ``eps``)."""

ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
    nn.LogSigmoid, nn.Softsign,
)  # fmt: skip
"""Element-wise non-linear modules: the Rescale rule."""
POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)  # fmt: skip
"""Max-pooling modules: the max-pool rule."""
MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.Dropout)

_LINEAR = frozenset(
    {
        "Add", "Sub", "Neg", "Convolution", "Addmm", "T", "Permute", "View", "UnsafeView",
        "Reshape", "Expand", "Squeeze", "Unsqueeze", "Cat", "Stack", "Slice", "Select", "Index",
        "IndexSelect", "Clone", "Mean", "Sum", "AvgPool1D", "AvgPool2D", "AvgPool3D",
        "AdaptiveAvgPool2D", "AdaptiveAvgPool3D", "NativeBatchNorm", "CudnnBatchNorm",
        "MiopenBatchNorm", "UpsampleNearest1D", "UpsampleNearest2D", "UpsampleNearest3D",
        "UpsampleLinear1D", "UpsampleBilinear2D", "UpsampleBilinear2DAa", "UpsampleBicubic2D",
        "UpsampleTrilinear3D", "ConstantPadNd", "ReflectionPad1D", "ReflectionPad2D",
        "ReplicationPad1D", "ReplicationPad2D", "ToCopy", "Transpose", "AsStrided", "Split",
        "SplitWithSizes", "Unbind", "Flip", "Roll", "Repeat", "Alias", "PixelShuffle",
        "PixelUnshuffle", "Unfold", "Im2Col", "Col2Im",
    }
)  # fmt: skip
"""Autograd operations that are linear in their one input (batch norm: in eval mode)."""
_LINEAR_IN_ONE = frozenset({"Mul", "Mm", "Bmm", "Matmul", "Div"})
"""Operations linear when only one operand (Div: the numerator) depends on the input."""


def _operation(node: Any) -> str:
    return re.sub(r"Backward\d*$", "", type(node).__name__)


class _Rule(torch.autograd.Function):
    """Forward: the module's output as it is. Backward: the rule's multiplier of its input."""

    @staticmethod
    def forward(
        ctx: Any, inputs: Tensor, outputs: Tensor, rule: Callable[[Tensor], Tensor]
    ) -> Tensor:
        ctx.rule = rule
        return outputs.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, signal: Tensor) -> tuple[Tensor, None, None]:
        return ctx.rule(signal), None, None


_rule_apply: Callable[[Tensor, Tensor, Callable[[Tensor], Tensor]], Tensor] = _Rule.apply


def _gradient(module: nn.Module, at: Tensor, signal: Tensor) -> Tensor:
    """The module's true gradient at ``at``, applied to ``signal`` (its hooks not run)."""
    leaf = at.detach().requires_grad_(True)
    with torch.enable_grad():
        output = module.forward(leaf.clone())  # a copy: in-place modules may write to it
    (gradient,) = torch.autograd.grad(output, leaf, signal)
    return gradient


def _ratio(change: Tensor, delta_in: Tensor, fallback: Callable[[], Tensor]) -> Tensor:
    """``change / delta_in``, and ``fallback()`` where ``|delta_in| < EPSILON``."""
    small = delta_in.abs() < EPSILON
    ratio = change / delta_in
    if bool(small.any()):
        ratio = torch.where(small, fallback(), ratio)
    return ratio


def rescale_rule(
    module: nn.Module, x: Tensor, y: Tensor, ref_x: Tensor, ref_y: Tensor
) -> Callable[[Tensor], Tensor]:
    """The multiplier of a non-linear module's input, given that of its output."""
    delta_in = x - ref_x
    if isinstance(module, POOLS):

        def pool(signal: Tensor) -> Tensor:
            top = torch.maximum(y, ref_y)
            shares = _gradient(module, x, signal * (top - ref_y)) + _gradient(
                module, ref_x, signal * (y - top)
            )
            return _ratio(shares, delta_in, lambda: _gradient(module, x, signal))

        return pool

    def elementwise(signal: Tensor) -> Tensor:
        change = signal * (y - ref_y)
        return _ratio(change, delta_in, lambda: _gradient(module, x, signal))

    return elementwise


class Propagation:
    """The hooks of one DeepLIFT run on ``root``: record references, then rescale inputs."""

    def __init__(self, root: nn.Module, owner: str) -> None:
        self.root, self.owner = root, owner
        self.names = {module: name for name, module in root.named_modules()}
        self.rules = [m for m in self.names if isinstance(m, ELEMENTWISE + POOLS)]
        self.calls: dict[nn.Module, int] = {}
        self.stash: dict[nn.Module, Tensor] = {}
        self.captured: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}
        self.recorded: dict[nn.Module, list[tuple[list[Tensor], list[Tensor]]]] = {}
        self.references: dict[nn.Module, list[tuple[Tensor, Tensor]]] = {}
        self.rows: Tensor | None = None  # the reference index of each row of the next pass
        self.model_input: Tensor | None = None

    # ------------------------------------------------------------------ hooks
    @contextmanager
    def hooks(self, recording: bool) -> Iterator[None]:
        """Hooks that record the references' activations, or that apply the rules."""
        handles = [self.root.register_forward_pre_hook(self._start)]
        try:
            if not recording:
                handles.append(self.root.register_forward_hook(self._check_graph))
            for module in self.rules:
                handles.append(module.register_forward_pre_hook(self._keep_input))
                hook = self._record if recording else self._rescale
                handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
            self.stash.clear()

    def _start(self, root: nn.Module, args: tuple[Any, ...]) -> None:
        """A new forward pass: count calls afresh; refuse modules in training mode."""
        self.calls = {}
        self.captured = {module: [] for module in self.rules}
        self.model_input = args[0] if args and isinstance(args[0], Tensor) else None
        for module, name in self.names.items():
            if isinstance(module, MODE_DEPENDENT) and module.training:
                raise ModelError(
                    f"{self.owner} needs {name!r} ({type(module).__name__}) in eval mode: in "
                    "training mode it is not the same function for the input and the "
                    "reference. Explain the model in eval mode (Model(..., eval_mode=True), "
                    "the default)."
                )

    def _keep_input(self, module: nn.Module, args: tuple[Any, ...]) -> Any:
        inputs = args[0]
        if not isinstance(inputs, Tensor):
            raise ModelError(f"{self.owner}: {self.names[module]!r} was not given a tensor.")
        self.stash[module] = inputs
        if getattr(module, "inplace", False):
            return (inputs.clone(), *args[1:])  # the module overwrites the copy, not its input
        return None

    def _output(self, module: nn.Module, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise ModelError(
                f"{self.owner} needs {self.names[module]!r} to return one tensor; "
                f"it returned {type(output).__name__} (return_indices=True?)."
            )
        return output

    def _record(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        inputs = self.stash.pop(module)
        self.captured[module].append((inputs.clone(), self._output(module, output).clone()))

    def keep_captured(self) -> None:
        """Keep the activations the last pass captured (a pass over reference rows)."""
        for module, calls in self.captured.items():
            kept = self.recorded.setdefault(module, [])
            for call, (inputs, outputs) in enumerate(calls):
                if call == len(kept):
                    kept.append(([], []))
                kept[call][0].append(inputs)
                kept[call][1].append(outputs)

    def finish_recording(self) -> None:
        """Join the recorded batches (outside inference mode, so autograd may read them)."""
        self.references = {
            module: [(torch.cat(i).clone(), torch.cat(o).clone()) for i, o in calls]
            for module, calls in self.recorded.items()
        }
        self.recorded = {}

    def _reference(self, module: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """The recorded reference activations (input, output) of this call, by row."""
        call = self.calls.get(module, 0)
        self.calls[module] = call + 1
        name = self.names[module]
        calls = self.references.get(module, [])
        rows = self.rows
        if call >= len(calls) or rows is None:
            raise ModelError(
                f"{self.owner}: {name!r} ran more often for the input than for the reference; "
                "the model's forward must take the same path for every input."
            )
        ref_in, ref_out = calls[call]
        if rows.shape[0] == 1:  # one row: a batch-size measurement repeats it
            ref_in = ref_in[rows].expand(inputs.shape[0], *ref_in.shape[1:])
            ref_out = ref_out[rows].expand(inputs.shape[0], *ref_out.shape[1:])
        else:
            ref_in, ref_out = ref_in[rows], ref_out[rows]
        if ref_in.shape != inputs.shape:
            raise ModelError(
                f"{self.owner}: {name!r} received {tuple(inputs.shape)} for the input but "
                f"{tuple(ref_in.shape)} for the reference; the model's forward must take the "
                "same path for every input."
            )
        return ref_in, ref_out

    def _rescale(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        inputs = self.stash.pop(module)
        output = self._output(module, output)
        if not torch.is_grad_enabled():
            return None
        ref_in, ref_out = self._reference(module, inputs)
        rule = rescale_rule(module, inputs.detach(), output.detach(), ref_in, ref_out)
        return _rule_apply(inputs, output.detach(), rule)

    def _check_graph(self, root: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """Refuse a non-linear operation without a rule anywhere in the pass's graph."""
        if not (torch.is_grad_enabled() and isinstance(output, Tensor)):
            return
        stop = None if self.model_input is None else self.model_input.grad_fn
        seen: set[Any] = set()
        pending = [output.grad_fn]
        while pending:
            node = pending.pop()
            if node is None or node is stop or node in seen:
                continue
            seen.add(node)
            parents = [parent for parent, _ in node.next_functions if parent is not None]
            operation = _operation(node)
            linear = (
                operation in _LINEAR
                or operation in ("AccumulateGrad", "_Rule")
                or (operation in _LINEAR_IN_ONE and len(parents) <= 1)
            )
            if operation == "Div" and len(node.next_functions) > 1:
                linear = linear and node.next_functions[1][0] is None  # a constant divisor
            if not linear:
                raise self._unsupported(operation)
            pending.extend(parents)

    def _unsupported(self, operation: str) -> ModelError:
        modules = ", ".join(t.__name__ for t in ELEMENTWISE + POOLS)
        return ModelError(
            f"{self.owner} has no rule for the non-linear operation {operation!r} in the "
            "model's forward pass: a functional call (F.relu, torch.sigmoid, F.max_pool2d), a "
            "product or quotient of two activations, softmax, a normalisation such as "
            "LayerNorm, or a module type without a rule. Its map would be silently wrong. "
            f"Rules exist for the modules {modules}; write the model's non-linearities as "
            "such modules (each call is seen), or explain it with integrated_gradients or a "
            "perturbation method."
        )


def rescale_rows(
    model: Model,
    references: Tensor,
    n_samples: int,
    per_sample: int,
    make_rows: Callable[[Tensor, Tensor], Tensor],
    reference_of: Callable[[Tensor, Tensor], Tensor],
    target: Target,
    consume: Callable[[Tensor, Tensor, Tensor, Tensor], None],
    *,
    owner: str,
) -> None:
    """DeepLIFT multipliers of generated rows, each against its own reference row.

    ``references`` ``(R, ...)`` are the distinct references; ``reference_of(samples,
    indices)`` gives the reference index of each row ``make_rows(samples, indices)``.
    ``consume(samples, indices, rows, multipliers)`` receives each batch, as in
    :meth:`~faithmap.core.model.Model.gradient_rows`; the references' forward passes are
    counted in the model's ledger too.
    """
    module = model.module
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{owner} propagates multipliers through the layers of an nn.Module. Got "
            f"{type(module).__name__} instead; use a perturbation method (occlusion, rise)."
        )
    if target.classes is None:
        raise TargetError(
            f"{owner} explains one output of the model, a class index; a callable target "
            "may be a non-linear function of the outputs, which has no rule. Pass class "
            "indices, or use integrated_gradients for a callable target."
        )
    propagation = Propagation(module, owner)

    def keep(*_: Tensor) -> None:
        propagation.keep_captured()

    with propagation.hooks(recording=True):
        model.output_rows(
            references.shape[0], 1, lambda s, _: references[s], keep, device=references.device
        )
    propagation.finish_recording()

    def rows(samples: Tensor, indices: Tensor) -> Tensor:
        propagation.rows = reference_of(samples, indices)
        return make_rows(samples, indices)

    with propagation.hooks(recording=False):
        model.gradient_rows(n_samples, per_sample, rows, target, consume, device=references.device)
