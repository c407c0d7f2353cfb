"""Layer-wise relevance propagation with composites of rules assigned by layer type.

Forward hooks replace the output of every affine layer with a value equal to it whose gradient
is the layer's LRP rule (:mod:`faithmap.methods.lrp_rules`), so one backward pass through
:meth:`faithmap.Model.gradient_rows` carries the relevance signal down, and relevance is the
input times that signal; noisy copies for SmoothGrad over LRP are rows of the same pass
(:mod:`faithmap.methods.copies`). The rule's backward is computed lazily, only on paths the
backward pass takes. Batch normalisation is folded into the ``Conv2d`` or ``Linear`` whose
output it receives (checked in each forward pass by tensor identity) without touching the
model: the folded parameters are computed on the fly and the model's parameters, buffers and
hooks are left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from faithmap.core.constraints import Constraints, InstanceOf, Interval, options
from faithmap.core.method import REDUCE, Method, Reduce, reduce_channels
from faithmap.core.model import Model
from faithmap.core.registry import register_method
from faithmap.core.targets import Target
from faithmap.errors import InvalidParameterError, ModelError
from faithmap.methods.copies import Perturb, gradient_copies, unperturbed
from faithmap.methods.lrp_rules import (
    Affine,
    AlphaBeta,
    Epsilon,
    Gamma,
    Rule,
    fold_batch_norm,
)

LAYERS: dict[str, type[nn.Module]] = {
    "Conv2d": nn.Conv2d,
    "Linear": nn.Linear,
    "AvgPool2d": nn.AvgPool2d,
    "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d,
}
"""Layer types that take a rule, by the names a composite mapping uses."""
POOLS = ("AvgPool2d", "AdaptiveAvgPool2d")
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)
"""Layers whose true gradient is their LRP rule (no weights, positively homogeneous)."""
RULES = ("epsilon", "gamma", "z_plus", "alpha1beta0", "alpha2beta1", "basic")


def _composite(conv: str, linear: str, pool: str) -> dict[str, str]:
    return {"Conv2d": conv, "Linear": linear, "AvgPool2d": pool, "AdaptiveAvgPool2d": pool}


Composite = Literal[
    "epsilon",
    "gamma",
    "z_plus",
    "alpha1beta0",
    "alpha2beta1",
    "epsilon_plus",
    "epsilon_gamma",
    "epsilon_alpha2beta1",
]
COMPOSITES: dict[Composite, dict[str, str]] = {
    "epsilon": _composite("epsilon", "epsilon", "epsilon"),
    "gamma": _composite("gamma", "gamma", "basic"),
    "z_plus": _composite("z_plus", "z_plus", "basic"),
    "alpha1beta0": _composite("alpha1beta0", "alpha1beta0", "basic"),
    "alpha2beta1": _composite("alpha2beta1", "alpha2beta1", "basic"),
    "epsilon_plus": _composite("z_plus", "epsilon", "basic"),
    "epsilon_gamma": _composite("gamma", "epsilon", "basic"),
    "epsilon_alpha2beta1": _composite("alpha2beta1", "epsilon", "basic"),
}
"""Named composites: the rule of each layer type."""


class _Redirect(torch.autograd.Function):
    """Forward: the layer's output as it is. Backward: the rule's signal, to the layer's input."""

    @staticmethod
    def forward(
        ctx: Any, inputs: Tensor, outputs: Tensor, backward: Callable[[Tensor], Tensor]
    ) -> Tensor:
        ctx.rule_backward = backward
        return outputs.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, signal: Tensor) -> tuple[Tensor, None, None]:
        return ctx.rule_backward(signal), None, None


_redirect_apply: Callable[[Tensor, Tensor, Callable[[Tensor], Tensor]], Tensor] = _Redirect.apply


def _redirect(rule: Rule, layer: Affine) -> Tensor:
    """The layer's output, with the rule as its gradient."""
    return _redirect_apply(
        layer.inputs, layer.outputs.detach(), lambda signal: rule.gradient(layer, signal)
    )


@dataclass(frozen=True)
class _Produced:
    """An affine layer's output in the current forward pass, for a batch norm that follows."""

    output: Tensor
    module: nn.Module
    rule: Rule | None
    inputs: Tensor
    raw: Tensor


def layer_name(name: str) -> str:
    """A module's name for messages; the root module has the empty name."""
    return repr(name or "(the model itself)")


class Propagation:
    """The forward hooks of one LRP run on ``root``, with ``rules`` by layer-type name."""

    def __init__(self, root: nn.Module, rules: Mapping[str, Rule | None]) -> None:
        self.names: dict[nn.Module, str] = {}
        self.rules: dict[nn.Module, Rule | None] = {}
        self.norms: list[nn.Module] = []
        for name, module in root.named_modules():
            kind = type(module)
            if kind in LAYERS.values():
                self.rules[module] = rules[kind.__name__]
            elif kind in NORMS:
                self.norms.append(module)
            elif not self.accepts(module):
                raise self.unsupported(name, module)
            self.names[module] = name
        self.root = root
        self.produced: dict[int, _Produced] = {}
        self.first_input: Tensor | None = None
        self.first_signal: Tensor | None = None

    def accepts(self, module: nn.Module) -> bool:
        """Whether a module without a rule may appear: pass-through layers and containers."""
        return type(module) in PASS_THROUGH or (
            any(True for _ in module.children())
            and not any(True for _ in module.parameters(recurse=False))
        )

    def unsupported(self, name: str, module: nn.Module) -> ModelError:
        """The error for a module that :meth:`accepts` refuses."""
        supported = ", ".join(
            [*LAYERS, "BatchNorm1d", "BatchNorm2d"] + [t.__name__ for t in PASS_THROUGH]
        )
        return ModelError(
            f"LRP does not support the layer {layer_name(name)} of type "
            f"{type(module).__name__}. Supported layers are {supported}, in containers without "
            "parameters of their own; functional sums, means, reshapes and ReLUs in forward are "
            "fine. For a transformer (LayerNorm, GELU, attention) use the method 'attn_lrp'; "
            "otherwise explain this model with a gradient method (integrated_gradients) or a "
            "perturbation method (occlusion, rise)."
        )

    def _start(self, *_: Any) -> None:
        """A new forward pass: forget the layers and first input of the last one."""
        self.produced.clear()
        self.first_input = self.first_signal = None

    @contextmanager
    def hooks(self) -> Iterator[None]:
        """Install the hooks for the block; removed afterwards, also when the model raises."""
        handles = [self.root.register_forward_pre_hook(self._start)]
        try:
            for module in self.rules:
                handles.append(module.register_forward_pre_hook(self._first_hook))
                handles.append(module.register_forward_hook(self._affine_hook))
            for module in self.norms:
                handles.append(module.register_forward_hook(self._norm_hook))
            for module in self.names:
                if isinstance(module, nn.Dropout):
                    handles.append(module.register_forward_hook(self._dropout_hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
            self._start()

    def _first_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        """Keep the input of the pass's first rule layer and, in the backward, its signal."""
        inputs = args[0]
        if self.first_input is not None or not torch.is_grad_enabled():
            return
        self.first_input = inputs
        if isinstance(inputs, Tensor) and inputs.requires_grad:
            inputs.register_hook(self._keep_first_signal)  # type: ignore[no-untyped-call]

    def _keep_first_signal(self, signal: Tensor) -> None:
        self.first_signal = signal

    def relevance(self, signal: Tensor, rows: Tensor) -> Tensor:
        """The relevance of the input rows, given their signal (modified gradient).

        It is the relevance that reaches the first rule layer's input, ``input * signal``
        there. When that input has the shape of the rows, what ``forward`` did before the
        first layer (an input normalisation such as ``(x - m) / s``) is taken to act pixel by
        pixel, and each pixel keeps the relevance of its normalised value; otherwise the
        relevance is ``rows * signal`` at the model's input.
        """
        first, first_signal = self.first_input, self.first_signal
        if first is None or first_signal is None or first.shape != rows.shape:
            return signal * rows
        return first.detach() * first_signal

    def _affine_hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Any:
        if not torch.is_grad_enabled():
            return None
        rule = self.rules[module]
        inputs = args[0]
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        result = output
        if rule is not None:
            result = _redirect(rule, Affine(module, weight, bias, inputs, output))
        self.produced[id(result)] = _Produced(result, module, rule, inputs, output)
        return result

    def _norm_hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Any:
        if not torch.is_grad_enabled():
            return None
        name = self.names[module]
        if module.training:
            raise ModelError(
                f"LRP folds the batch normalisation {name!r} with its running statistics, but "
                "it is in training mode. Explain the model in eval mode (Model(..., "
                "eval_mode=True), the default)."
            )
        source = self.produced.get(id(args[0]))
        if (
            source is None
            or source.output is not args[0]
            or not isinstance(source.module, nn.Conv2d | nn.Linear)
            or (isinstance(source.module, nn.Linear) and source.raw.dim() != 2)
        ):
            raise ModelError(
                f"LRP folds each batch normalisation into the Conv2d or Linear layer whose "
                f"output it receives (a Linear's of shape (N, C)), but {name!r} "
                f"({type(module).__name__}) receives something else. Put it directly after a "
                "Conv2d or Linear layer."
            )
        if source.rule is None or not isinstance(module, NORMS):
            return None  # the basic rule is the plain gradient, folded or not
        weight, bias = fold_batch_norm(source.module.weight, source.module.bias, module)
        folded = module.forward(source.raw)
        return _redirect(source.rule, Affine(source.module, weight, bias, source.inputs, folded))

    def _dropout_hook(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Any:
        if module.training:
            raise ModelError(
                f"LRP needs dropout {self.names[module]!r} in eval mode. Explain the model in "
                "eval mode (Model(..., eval_mode=True), the default)."
            )
        return None


@register_method("lrp")
@dataclass(frozen=True, kw_only=True)
class Lrp(Method):
    """Layer-wise relevance propagation with a composite of rules (Bach et al. 2015).

    The target's score is handed down layer by layer, each affine layer splitting the
    relevance of its outputs among its inputs by its rule; the attribution is the relevance
    that reaches the input, ``input * modified gradient``. Supported layers: ``Conv2d``,
    ``Linear``, ``AvgPool2d`` and ``AdaptiveAvgPool2d`` (each with a rule), ``BatchNorm1d``
    and ``BatchNorm2d`` (folded into the ``Conv2d`` or ``Linear`` they follow), ``ReLU``,
    ``MaxPool2d`` (relevance to the maximum), ``Flatten``, ``Dropout`` and ``Identity``, inside
    containers without parameters of their own. Additions, means, reshapes and ReLUs written
    in ``forward`` keep their gradient, which splits relevance in proportion to the inputs
    (the LRP-0 rule): a residual sum shares it between the skip path and the block. Any other
    layer (attention, ``LayerNorm``, ``GELU``, a custom module) raises a :class:`ModelError`
    naming it; transformers are explained by ``attn_lrp``
    (:class:`~faithmap.methods.lrp_transformer.AttnLrp`). The map is the relevance that
    reaches the first rule layer's input; when that
    input has the shape of the model's input, whatever ``forward`` does before it (an input
    normalisation ``(x - m) / s``, as in the built-in models) is taken as pixel-wise, and each
    pixel gets the relevance of its normalised value, so the total is conserved through it.

    Parameters
    ----------
    composite : str or mapping, default="epsilon_plus"
        The rule of each layer type. A name: ``"epsilon"`` (every layer, pools included),
        ``"gamma"``, ``"z_plus"`` (= ``"alpha1beta0"``), ``"alpha2beta1"`` (every
        ``Conv2d`` and ``Linear``), or ``"epsilon_plus"``, ``"epsilon_gamma"``,
        ``"epsilon_alpha2beta1"`` (the named rule for ``Conv2d``, epsilon for ``Linear``, as
        recommended by Kohlbrenner et al. 2020). Pools get ``"basic"`` in all but
        ``"epsilon"``. Or a mapping from layer type (``"Conv2d"``, ``"Linear"``,
        ``"AvgPool2d"``, ``"AdaptiveAvgPool2d"``) to a rule (``"epsilon"``, ``"gamma"``,
        ``"z_plus"``, ``"alpha1beta0"``, ``"alpha2beta1"``, or ``"basic"``: LRP-0, the plain
        gradient); types left out take ``"epsilon"``; pools take only ``"epsilon"`` or
        ``"basic"``.
    epsilon : float, default=1e-6
        The stabiliser of the epsilon rule; it also keeps the gamma and alpha-beta
        denominators away from zero. Must be > 0.
    gamma : float, default=0.25
        The weight of the positive parameters in the gamma rule.
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed; ``"sum"`` keeps the relevance total.

    References
    ----------
    Bach, Binder, Montavon, Klauschen, Müller, Samek, "On Pixel-Wise Explanations for
    Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation", PLoS ONE 2015.

    Montavon, Binder, Lapuschkin, Samek, Müller, "Layer-Wise Relevance Propagation: An
    Overview", in Explainable AI, Springer 2019.

    Kohlbrenner, Bauer, Nakajima, Binder, Samek, Lapuschkin, "Towards Best Practice in
    Explaining Neural Network Decisions with LRP", IJCNN 2020.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU(),
    ...                           torch.nn.Linear(3, 2, bias=False))
    >>> _ = net[0].weight.data.abs_()  # every hidden unit active, so the output is not 0
    >>> x = torch.rand(1, 4)
    >>> relevance = Lrp(composite="epsilon", epsilon=1e-9).explain(net, x, 0).attributions
    >>> bool(torch.isclose(relevance.sum(), net(x)[0, 0], atol=1e-6))
    True
    """

    parameter_constraints: ClassVar[Constraints] = {
        "composite": [
            options(get_args(Composite)),
            InstanceOf((Mapping,), "a mapping from layer type to rule"),
        ],
        "epsilon": [Interval(float, 0, closed="right")],
        "gamma": [Interval(float, 0)],
        "reduce": [REDUCE],
    }

    composite: Composite | Mapping[str, str] = "epsilon_plus"
    epsilon: float = 1e-6
    gamma: float = 0.25
    reduce: Reduce = "sum"

    def check(self) -> None:
        if isinstance(self.composite, Mapping):  # kept as a plain dict, the method's record
            object.__setattr__(self, "composite", dict(self.composite))
        self.layer_rules()  # every layer type and rule of a mapping must be known

    def layer_rules(self) -> dict[str, str]:
        """The rule name of each layer type that takes one."""
        composite = self.composite
        if isinstance(composite, str):
            return dict(COMPOSITES[composite])
        rules = dict(COMPOSITES["epsilon"])
        for layer, rule in composite.items():
            if layer not in LAYERS:
                raise InvalidParameterError(
                    f"The 'composite' mapping of Lrp names layer types; each must be one of "
                    f"{', '.join(map(repr, LAYERS))}. Got {layer!r} instead."
                )
            allowed = ("epsilon", "basic") if layer in POOLS else RULES
            if rule not in allowed:
                raise InvalidParameterError(
                    f"The rule for {layer} in the 'composite' mapping of Lrp must be one of "
                    f"{', '.join(map(repr, allowed))}. Got {rule!r} instead."
                )
            rules[layer] = rule
        return rules

    def rule(self, name: str) -> Rule | None:
        """The rule called ``name`` with this method's parameters (``None``: the gradient)."""
        if name == "epsilon":
            return Epsilon(self.epsilon)
        if name == "gamma":
            return Gamma(self.gamma, self.epsilon)
        if name in ("z_plus", "alpha1beta0"):
            return AlphaBeta(1.0, 0.0, self.epsilon)
        if name == "alpha2beta1":
            return AlphaBeta(2.0, 1.0, self.epsilon)
        return None

    def propagation(self, module: nn.Module) -> Propagation:
        """The hooks that carry this method's rules through ``module``."""
        rules = {layer: self.rule(name) for layer, name in self.layer_rules().items()}
        return Propagation(module, rules)

    def copy_attributions(
        self, model: Model, inputs: Tensor, target: Target, copies: int, perturb: Perturb
    ) -> Tensor:
        """Relevance of each copy ``(N, copies, ...)``, for ensembles; see :mod:`.copies`."""
        module = model.module
        if not isinstance(module, nn.Module):
            raise ModelError(
                "LRP propagates relevance through the layers of an nn.Module. Got "
                f"{type(module).__name__} instead; use a perturbation method (occlusion, rise)."
            )
        propagation = self.propagation(module)
        with propagation.hooks():
            return gradient_copies(
                model, inputs, target, copies, perturb, propagation.relevance, activation="logits"
            )

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        relevance = self.copy_attributions(model, inputs, target, 1, unperturbed(inputs))
        return reduce_channels(relevance[:, 0], self.reduce)
