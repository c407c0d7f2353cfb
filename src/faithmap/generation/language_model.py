"""A causal language model as :mod:`faithmap.generation` sees it: token ids in, next-token logits.

:class:`CausalLM` wraps a Hugging Face ``AutoModelForCausalLM`` (an instance, or a local directory
through :meth:`CausalLM.from_pretrained`), any ``nn.Module`` mapping token ids ``(B, T)`` to
logits ``(B, T, V)``, or a plain callable doing the same. Modules can be run on given prompt
embeddings (a forward hook replaces the embedding layer's output at the prompt positions, as
:class:`faithmap.text.EmbeddingClassifier` does for classifiers), which is what removal in
embedding space and the gradient methods need; a plain callable can only be run on token ids.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.errors import FileProblemError, MissingDependencyError, ModelError
from faithmap.text.model import embedding_layer, logits_of


def _is_hugging_face(module: object) -> bool:
    """Whether ``module`` is a Hugging Face model (it takes ``input_ids=``/``attention_mask=``)."""
    return any(cls.__name__ == "PreTrainedModel" for cls in type(module).__mro__)


class CausalLM:
    """A causal language model: token ids ``(B, T)`` to next-token logits ``(B, T, V)``.

    Parameters
    ----------
    model : nn.Module or callable
        A Hugging Face causal LM, an ``nn.Module`` taking token ids ``(B, T)`` and returning
        logits ``(B, T, V)`` (or an output with ``.logits``), or a plain callable doing the same
        (perturbation methods only, with a token-id baseline).
    tokenizer : object or None, default=None
        The model's tokenizer (a Hugging Face *fast* tokenizer, for prompts given as text and for
        word, sentence and span features).
    embedding : str or None, default=None
        Dotted name of the token embedding layer; by default ``get_input_embeddings()`` or the
        module's only ``nn.Embedding`` (see :func:`faithmap.text.embedding_layer`).
    """

    def __init__(
        self,
        model: nn.Module | Callable[[Tensor], Any],
        *,
        tokenizer: Any = None,
        embedding: str | None = None,
    ) -> None:
        if not callable(model):
            raise ModelError(
                "A language model must be an nn.Module or a callable mapping token ids (B, T) "
                f"to logits (B, T, V). Got {type(model).__name__} instead."
            )
        self.model: Any = model  # an nn.Module (often Hugging Face) or a plain callable
        self.tokenizer = tokenizer
        self.hugging_face = _is_hugging_face(model)
        forward = getattr(model, "forward", None)
        self.trims_logits = (
            self.hugging_face
            and callable(forward)
            and ("logits_to_keep" in inspect.signature(forward).parameters)
        )
        self.layer: nn.Module | None = None
        if isinstance(model, nn.Module):
            self.layer = embedding_layer(model, embedding)

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> CausalLM:
        """Load ``AutoModelForCausalLM`` and ``AutoTokenizer`` from a local directory (no download).

        ``kwargs`` go to ``AutoModelForCausalLM.from_pretrained`` (``dtype``,
        ``attn_implementation="eager"`` for the attention methods, ...).
        """
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as err:
            raise MissingDependencyError(
                "Loading a Hugging Face language model needs transformers: "
                'pip install "faithmap[text]".'
            ) from err
        if not Path(path).is_dir():
            raise FileProblemError(
                f"The language model directory {str(path)!r} does not exist. Give a local "
                "directory written by model.save_pretrained (and tokenizer.save_pretrained)."
            )
        model: Any = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except OSError:
            tokenizer = None
        model.eval()
        return cls(model, tokenizer=tokenizer)

    @property
    def device(self) -> torch.device:
        """The device of the module's parameters (the CPU for a plain callable)."""
        if isinstance(self.model, nn.Module):
            first = next(self.model.parameters(), None)
            if first is not None:
                return first.device
        return torch.device("cpu")

    @property
    def has_embeddings(self) -> bool:
        """Whether the model can be run on given prompt embeddings (an ``nn.Module``)."""
        return self.layer is not None

    def embed(self, ids: Tensor) -> Tensor:
        """The token embeddings ``(T, D)`` of ids ``(T,)``, detached."""
        layer = self.require_embeddings("Embedding the prompt")
        with torch.no_grad():
            embedded = layer(ids.to(self.device))
        if not isinstance(embedded, Tensor) or embedded.shape[:1] != ids.shape:
            raise ModelError(
                "The embedding layer must map token ids (T,) to embeddings (T, D). Got "
                f"{type(embedded).__name__} instead; name the right layer with embedding='...'."
            )
        return embedded.detach()

    def require_embeddings(self, what: str) -> nn.Module:
        """The embedding layer, or a :class:`ModelError` saying ``what`` needs one."""
        if self.layer is None:
            raise ModelError(
                f"{what} needs the model's token embeddings, but the model is a plain callable "
                "of token ids. Wrap an nn.Module, or use a perturbation method (feature_ablation, "
                "kernel_shap, lime) with a token-id baseline (baseline='pad', 'unk' or an int)."
            )
        return self.layer

    def _call(self, ids: Tensor, **extra: Any) -> Any:
        if self.hugging_face:
            return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra)
        if extra:
            raise ModelError(
                f"Only Hugging Face models take {sorted(extra)}; this model is "
                f"{type(self.model).__name__}."
            )
        return self.model(ids)

    def logits(
        self, ids: Tensor, prompt_embeddings: Tensor | None = None, *, last: int | None = None
    ) -> Tensor:
        """Logits ``(B, T, V)`` of token ids ``(B, T)``.

        With ``prompt_embeddings`` ``(B, P, D)`` the embedding layer's output at the first ``P``
        positions is replaced by them (the ids there are then only placeholders). With ``last``
        the result may hold only the last ``last`` positions ``(B, last, V)``: Hugging Face
        models that take ``logits_to_keep`` then skip the output projection of the others (with
        a vocabulary of 50k that projection is most of a small model's work).
        """
        if last is not None and self.trims_logits:
            output = self.run(ids, prompt_embeddings, logits_to_keep=last)
            return logits_of_lm(output, ids[:, -last:])
        return logits_of_lm(self.run(ids, prompt_embeddings), ids)

    def run(self, ids: Tensor, prompt_embeddings: Tensor | None = None, **extra: Any) -> Any:
        """The model's raw output on ``ids``, with prompt embeddings replaced if given."""
        with self.replaced_prompt(prompt_embeddings):
            try:
                return self._call(ids, **extra)
            except ModelError:
                raise
            except Exception as err:
                raise ModelError(
                    f"The language model raised {type(err).__name__} on token ids of shape "
                    f"{tuple(ids.shape)}: {err}. It must map ids (B, T) to logits (B, T, V)."
                ) from err

    @contextmanager
    def replaced_prompt(self, prompt_embeddings: Tensor | None) -> Iterator[None]:
        """Inside the block, the embedding layer returns ``prompt_embeddings`` at the prompt."""
        if prompt_embeddings is None:
            yield
            return
        layer = self.require_embeddings("Running on prompt embeddings")
        length = prompt_embeddings.shape[1]

        def replace(_: nn.Module, __: Any, output: Tensor) -> Tensor:
            rest = output[:, length:].expand(prompt_embeddings.shape[0], -1, -1)
            return torch.cat([prompt_embeddings.to(output.dtype), rest], dim=1)

        handle = layer.register_forward_hook(replace)
        try:
            yield
        finally:
            handle.remove()

    @contextmanager
    def eager_attention(self) -> Iterator[None]:
        """Inside the block a Hugging Face model returns attention weights (eager attention);
        its attention implementation is restored afterwards."""
        if not self.hugging_face:
            raise ModelError(
                "Attention methods read attention weights (output_attentions=True), which only "
                f"Hugging Face models return; this model is {type(self.model).__name__}."
            )
        config = self.model.config
        before = getattr(config, "_attn_implementation", None)
        switch = before not in (None, "eager") and hasattr(self.model, "set_attn_implementation")
        if switch:
            self.model.set_attn_implementation("eager")
        try:
            yield
        finally:
            if switch:
                self.model.set_attn_implementation(before)

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int,
        *,
        sample: bool = False,
        temperature: float = 1.0,
        seed: int = 0,
        stop_ids: tuple[int, ...] = (),
    ) -> Tensor:
        """Continue the prompt ``(P,)`` by up to ``max_new_tokens`` tokens, ``(S,)``.

        Greedy (``sample=False``, the arg-max token at each step, as Hugging Face ``generate``
        with ``do_sample=False``) or sampled from ``softmax(logits / temperature)`` with a
        generator seeded by ``seed``. Generation stops after a token of ``stop_ids`` (which is
        kept as the last step). Every step is one full forward pass (no cache), so any callable
        works.
        """
        generator = torch.Generator(device=self.device).manual_seed(seed)
        ids = prompt_ids.to(self.device)[None]
        for _ in range(max_new_tokens):
            last = self.logits(ids)[0, -1].float()
            if sample:
                probabilities = torch.softmax(last / temperature, dim=0)
                token = torch.multinomial(probabilities, 1, generator=generator)
            else:
                token = last.argmax()[None]
            ids = torch.cat([ids, token[None]], dim=1)
            if int(token) in stop_ids:
                break
        return ids[0, prompt_ids.shape[0] :].clone()


def logits_of_lm(output: Any, ids: Tensor) -> Tensor:
    """The ``(B, T, V)`` logits of a language model's output on ids ``(B, T)``, checked."""
    logits = logits_of(output)
    if logits.dim() == 4 and logits.shape[1] == 1:  # some models add a heads axis
        logits = logits[:, 0]
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(ids.shape):
        raise ModelError(
            "A language model must return next-token logits (B, T, V) for token ids (B, T) = "
            f"{tuple(ids.shape)}. Got {tuple(logits.shape)} instead."
        )
    return logits
