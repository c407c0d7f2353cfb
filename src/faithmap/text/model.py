"""A text classifier seen through its token embeddings, so faithmap's methods apply unchanged.

Token ids are integers: they cannot be blended, interpolated or differentiated. The embedding
layer's output is the continuous input of the network, so :class:`EmbeddingClassifier` makes
it the model's input. The input of one token is its embedding *minus a reference*: the
embedding of the mask (or pad) token for ordinary tokens, and the token's own embedding for
special tokens (``[CLS]``, ``[SEP]``), whose input is therefore zero. With this offset:

- the constant fill ``0.0`` — every method's and metric's default — turns a removed token into
  the mask token exactly (for 0/1 keep-masks), and never changes a special token;
- integrated gradients from the baseline ``0.0`` runs from the all-mask text to the text, with
  the embedding as path variable (Sundararajan et al. 2017), and its completeness holds;
- gradient methods read gradients with respect to the embeddings.

The inputs are laid out as a one-pixel-wide image ``(N, D, T, 1)`` (``D`` embedding channels,
``T`` token positions), so region label maps ``(N, T, 1)`` and channel reductions work as they
do for images; summing the ``D`` channels gives one attribution per token.

References
----------
Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (embedding
inputs for text models).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from faithmap.errors import InvalidParameterError, ModelError
from faithmap.text.tokens import TokenizedText


def embedding_layer(module: nn.Module, name: str | None = None) -> nn.Module:
    """The layer mapping token ids to embeddings.

    ``name`` (a dotted submodule name) if given; else ``module.get_input_embeddings()`` (every
    Hugging Face model has it); else the model's only ``nn.Embedding``.
    """
    if name is not None:
        try:
            return module.get_submodule(name)
        except AttributeError as err:
            raise InvalidParameterError(
                f"The 'embedding' layer {name!r} is not a submodule of the model. Give a dotted "
                "name from model.named_modules(), e.g. 'bert.embeddings.word_embeddings'."
            ) from err
    getter = getattr(module, "get_input_embeddings", None)
    if callable(getter):
        layer = getter()
        if isinstance(layer, nn.Module):
            return layer
    found = [m for m in module.modules() if isinstance(m, nn.Embedding)]
    if len(found) != 1:
        raise InvalidParameterError(
            f"Cannot tell which of the model's {len(found)} nn.Embedding layers embeds the "
            "tokens. Name it with embedding='...' (a dotted name from model.named_modules())."
        )
    return found[0]


def baseline_token_id(tokenizer: Any, baseline: str | int) -> int:
    """The id a removed token becomes: the tokenizer's mask or pad token, or a given id."""
    if isinstance(baseline, int) and not isinstance(baseline, bool):
        return baseline
    if baseline not in ("mask", "pad"):
        raise InvalidParameterError(
            "The 'baseline' parameter for a text must be 'mask', 'pad' or a token id (int). Got "
            f"{baseline!r} instead."
        )
    token_id = getattr(tokenizer, f"{baseline}_token_id", None)
    if token_id is None:
        raise InvalidParameterError(
            f"The tokenizer has no {baseline} token, so removed tokens cannot become one. Pass "
            "baseline='pad', baseline='mask' or the id of a neutral token."
        )
    return int(token_id)


def logits_of(output: Any) -> Tensor:
    """The logits tensor of a model's output: a tensor, an object with ``.logits``, or a tuple."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ModelError(
        "The text model must return logits: a tensor, an output with a .logits tensor (Hugging "
        f"Face), or a tuple starting with it. Got {type(output).__name__} instead."
    )


class EmbeddingClassifier(nn.Module):
    """A sequence classifier for one tokenised text, taking embedding offsets ``(B, D, T, 1)``.

    It calls ``module(input_ids=..., attention_mask=...)`` with the text's ids while a forward
    hook (removed after every call) replaces the embedding layer's output by
    ``reference + inputs``; see the module docstring for the reference.

    Parameters
    ----------
    module : nn.Module
        A Hugging Face sequence classifier, or any module taking ``input_ids`` and
        ``attention_mask`` and returning logits.
    tokens : TokenizedText
        The text being explained.
    baseline_id : int
        The token id a removed token becomes.
    embedding : str or None, default=None
        Dotted name of the embedding layer (see :func:`embedding_layer`).

    Attributes
    ----------
    inputs : Tensor
        ``(1, D, T, 1)``: the text's own input (its embeddings minus the reference).

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    """

    reference: Tensor
    input_ids: Tensor

    def __init__(
        self,
        module: nn.Module,
        tokens: TokenizedText,
        baseline_id: int,
        *,
        embedding: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ModelError(
                "A text model must be a torch nn.Module taking input_ids and attention_mask. Got "
                f"{type(module).__name__} instead."
            )
        self.module = module
        self.layer = embedding_layer(module, embedding)
        device = next(module.parameters()).device
        ids = tokens.input_ids.to(device)
        with torch.no_grad():
            embedded = self.layer(torch.cat([ids, ids.new_tensor([baseline_id])]))
        if not isinstance(embedded, Tensor) or embedded.dim() != 2:
            raise ModelError(
                "The embedding layer must map token ids (T,) to embeddings (T, D). Got "
                f"{type(embedded).__name__} instead; name the right layer with embedding='...'."
            )
        own, mask = embedded[:-1].detach(), embedded[-1].detach()
        special = tokens.special.to(device)[:, None]
        reference = torch.where(special, own, mask.expand_as(own))
        self.register_buffer("reference", reference, persistent=False)
        self.register_buffer("input_ids", ids[None], persistent=False)
        self.inputs = (own - reference).T[None, :, :, None].contiguous()

    def forward(self, inputs: Tensor) -> Tensor:
        """Logits ``(B, C)`` of the text with embeddings ``reference + inputs`` ``(B, D, T, 1)``."""
        embeddings = inputs[..., 0].transpose(1, 2) + self.reference
        batch = inputs.shape[0]
        ids = self.input_ids

        def replace(_: nn.Module, __: Any, output: Tensor) -> Tensor:
            return embeddings.to(output.dtype)

        handle = self.layer.register_forward_hook(replace)
        try:
            output = self.module(
                input_ids=ids.expand(batch, -1),
                attention_mask=torch.ones_like(ids).expand(batch, -1),
            )
        finally:
            handle.remove()
        return logits_of(output)
