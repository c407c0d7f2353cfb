"""LRP through transformers: AttnLRP's rules for attention, normalisation and activations.

The layers LRP already knows (``Conv2d``, ``Linear``, pools, batch norm) keep their composite's
rules through :class:`faithmap.methods.lrp.Propagation`'s hooks; the transformer operations get
theirs from :class:`~faithmap.methods.lrp_transformer_rules.TransformerRules`, a function mode
active only during the model's forward pass, and every forward pass's autograd graph is checked
for operations without a rule (:func:`~faithmap.methods.lrp_transformer_rules.check_graph`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from faithmap.core.constraints import Constraints, options
from faithmap.core.registry import register_method
from faithmap.errors import ModelError
from faithmap.methods.lrp import Composite, Lrp, Propagation, layer_name
from faithmap.methods.lrp_rules import Rule
from faithmap.methods.lrp_transformer_rules import Attention, TransformerRules, check_graph

NORMALISATIONS = (nn.LayerNorm, nn.RMSNorm)


class TransformerPropagation(Propagation):
    """:class:`Propagation` with the transformer rules applied during each forward pass."""

    def __init__(
        self,
        root: nn.Module,
        rules: Mapping[str, Rule | None],
        attention: Attention,
        epsilon: float,
    ) -> None:
        self.mode = TransformerRules(attention, epsilon)
        self.attention: Attention = attention
        self.rules_before_first = False
        super().__init__(root, rules)

    def accepts(self, module: nn.Module) -> bool:
        """Containers (their own parameters included: the graph check sees their use),
        normalisations, and layers without parameters; not a fused attention."""
        if isinstance(module, nn.MultiheadAttention):
            return False
        own = any(True for _ in module.parameters(recurse=False))
        leaf = not any(True for _ in module.children())
        return isinstance(module, NORMALISATIONS) or not (leaf and own)

    def unsupported(self, name: str, module: nn.Module) -> ModelError:
        if isinstance(module, nn.MultiheadAttention):
            return ModelError(
                f"attn_lrp cannot see inside the layer {layer_name(name)} of type "
                "MultiheadAttention: its fused forward hides the attention's products and "
                "softmax from the rules. Write the attention with nn.Linear projections and "
                "F.scaled_dot_product_attention (or matmul and softmax), as Hugging Face and "
                "timm models do."
            )
        return ModelError(
            f"attn_lrp has no rule for the layer {layer_name(name)} of type "
            f"{type(module).__name__}, a layer with parameters of its own. Layers with rules: "
            "Conv2d, Linear, BatchNorm1d/2d (folded), LayerNorm and RMSNorm; layers without "
            "parameters are checked operation by operation. Explain this model with "
            "integrated_gradients or a perturbation method (occlusion, rise)."
        )

    @contextmanager
    def hooks(self) -> Iterator[None]:
        """The LRP hooks, the function mode, and the graph check of every forward pass."""
        with self.mode, super().hooks():
            handles = [
                self.root.register_forward_pre_hook(self._activate),
                self.root.register_forward_hook(self._check),
            ]
            try:
                yield
            finally:
                self.mode.active = False
                for handle in handles:
                    handle.remove()

    def _activate(self, *_: Any) -> None:
        self.mode.active = True
        self.mode.applied = 0
        self.rules_before_first = False

    def _check(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.mode.active = False
        check_graph(output, self.attention)

    def _first_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        had_first = self.first_input is not None
        super()._first_hook(module, args)
        if not had_first and self.first_input is not None:
            self.rules_before_first = self.mode.applied > 0

    def relevance(self, signal: Tensor, rows: Tensor) -> Tensor:
        """As :meth:`Propagation.relevance`, but at the model's input when a transformer rule
        (a LayerNorm, say) acted before the first rule layer: that is no pixel-wise step."""
        if self.rules_before_first:
            return signal * rows
        return super().relevance(signal, rows)


@register_method("attn_lrp")
@dataclass(frozen=True, kw_only=True)
class AttnLrp(Lrp):
    """LRP for transformers with AttnLRP's rules (Achtibat et al. 2024).

    Relevance is handed down as in :class:`~faithmap.methods.lrp.Lrp` (the same composites for
    ``Conv2d``, ``Linear`` and pooling layers, the same batch-norm folding, so a CNN gets the
    same map as ``lrp``), and through the operations of a transformer by the rules of
    :mod:`~faithmap.methods.lrp_transformer_rules`: the identity rule through GELU, SiLU and
    other element-wise activations and through the standard deviation of LayerNorm and RMSNorm
    (Ali et al. 2022), the uniform rule (half to each factor) through products of two
    activations (``q @ k^T``, ``attention @ v``, gates), and AttnLRP's softmax rule or constant
    attention weights (``attention``). Residual sums share relevance in proportion to their
    terms. The operations are intercepted with a :class:`torch.overrides.TorchFunctionMode`
    while the model runs, so functional calls are covered and the model is left untouched; an
    operation without a rule (``torch.exp``, a division by an activation, a fused
    ``nn.MultiheadAttention``) raises a :class:`~faithmap.errors.ModelError` naming it. Works
    on faithmap's ``vit``, Hugging Face ViT and BERT-style encoders (``eager`` or ``sdpa``
    attention) and timm-style blocks.

    With ``attention="constant"`` (and ``composite="epsilon"`` with a small ``epsilon``) the
    relevance of a model without biases sums to the target's logit. AttnLRP's softmax rule
    lets the softmax's bias term absorb relevance, so the total is not conserved there.

    Agreement with the ``lxt`` package (AttnLRP's authors' code), version 2.1: its explicit
    rules (``linear_epsilon``, ``layer_norm_grad_fn``, ``matmul``, ``softmax``, ``identity``,
    ``add2``, ``mul2``) give the same relevance on faithmap's ViT within 1e-6 of the map's
    largest value (``tests/test_attn_lrp.py``). The differences are all in stabilisers: ``lxt``
    adds ``+epsilon`` to denominators where faithmap adds ``epsilon * sign(z)``; its
    ``layer_norm`` and ``matmul`` divide relevance by ``y + epsilon`` (``2y + epsilon``), while
    here those rules are exact gradients in which ``y`` cancels (``lxt.layer_norm`` fixes that
    epsilon at 1e-6, which alone moves its maps by about 1e-3 of their scale; the test passes
    its ``epsilon`` explicitly); and it applies the epsilon rule, not LRP-0, to residual sums.
    One rule differs beyond stabilisers: ``lxt``'s explicit ``matmul`` halves relevance even
    when one factor is constant, where here a product with a constant keeps all of it (it is
    linear), so constant attention is compared by conservation instead.

    Parameters
    ----------
    attention : {"attn_lrp", "constant"}, default="attn_lrp"
        ``"attn_lrp"``: AttnLRP's softmax rule, relevance flowing to queries and keys as well
        as values. ``"constant"``: the attention weights are constants (Ali et al.'s AH rule,
        CP-LRP in ``lxt``); all relevance flows through the values.
    composite : str or mapping, default="epsilon"
        The rules of ``Conv2d``, ``Linear`` and pooling layers, as for ``lrp``; AttnLRP uses
        the epsilon rule for linear layers.
    epsilon : float, default=1e-6
        The stabiliser of the epsilon rule and of the identity rule's ``y / x``.
    gamma : float, default=0.25
        The gamma rule's weight, for composites that use it.
    reduce : {"sum", "mean", "max", "abs_sum", "none"}, default="sum"
        How image channels are collapsed.

    References
    ----------
    Achtibat, Hatefi, Dreyer, Jain, Wiegand, Lapuschkin, Samek, "AttnLRP: Attention-Aware
    Layer-Wise Relevance Propagation for Transformers", ICML 2024.

    Ali, Schnake, Eberle, Montavon, Müller, Wolf, "XAI for Transformers: Better Explanations
    through Conservative Propagation", ICML 2022.

    Examples
    --------
    >>> import torch
    >>> from faithmap.zoo import load_builtin
    >>> vit = load_builtin("vit")
    >>> x = torch.rand(1, 3, 64, 64)
    >>> AttnLrp().explain(vit, x, 0).attributions.shape
    torch.Size([1, 1, 64, 64])
    """

    parameter_constraints: ClassVar[Constraints] = {
        **Lrp.parameter_constraints,
        "attention": [options(("attn_lrp", "constant"))],
    }

    composite: Composite | Mapping[str, str] = "epsilon"
    attention: Attention = "attn_lrp"

    def propagation(self, module: nn.Module) -> Propagation:
        rules = {layer: self.rule(name) for layer, name in self.layer_rules().items()}
        return TransformerPropagation(module, rules, self.attention, self.epsilon)
