"""What a generation explanation explains: a prompt, its continuation and each step's target.

The continuation is given (teacher forcing) or generated from the prompt, greedily or by seeded
sampling. Step ``s`` predicts continuation token ``s`` from the prompt and the ``s`` tokens
before it; its target is the log-probability of that token, or, with a contrast token ``B``,
``log p(A) - log p(B)`` ("A rather than B", Yin and Neubig 2022). All steps are read from one
teacher-forced forward pass of ``prompt + continuation``.

References
----------
Yin, Neubig, "Interpreting Language Models with Contrastive Explanations", EMNLP 2022.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.validation import check_float, check_int
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.generation.features import Prompt
from faithmap.generation.language_model import CausalLM

TokensLike = str | Tensor | Sequence[int]
"""A continuation or contrast: a text (tokenised without special tokens) or token ids."""


@dataclass(frozen=True)
class Continuation:
    """A prompt and the tokens that follow it, with the target of every step.

    Attributes
    ----------
    prompt : Prompt
    ids : Tensor
        ``(S,)`` the continuation's token ids (the target token ``A`` of each step).
    tokens : list of str
        Each step's token text.
    contrast : Tensor or None
        ``(S,)`` the contrast token ``B`` of each step, or ``None`` for plain log-probabilities.
    generated : str
        ``"given"``, ``"greedy"`` or ``"sampled"``.
    """

    prompt: Prompt
    ids: Tensor
    tokens: list[str]
    contrast: Tensor | None
    generated: str

    @property
    def steps(self) -> int:
        """The number of generated steps ``S``."""
        return int(self.ids.shape[0])

    @property
    def sequence(self) -> Tensor:
        """``(P + S,)`` the prompt's ids followed by the continuation's."""
        return torch.cat([self.prompt.ids, self.ids])

    @property
    def inputs(self) -> Tensor:
        """``(P + S - 1,)`` what a scoring pass reads: the sequence without its last token,
        which predicts no step (a causal model's other positions do not see it)."""
        return self.sequence[:-1]


def step_scores(logits: Tensor, prompt_length: int, ids: Tensor, contrast: Tensor | None) -> Tensor:
    """Each step's target ``(B, S)`` from teacher-forced logits ``(B, P + S, V)``.

    Position ``P - 1 + s`` predicts continuation token ``s``: its log-softmax at ``ids[s]``
    (minus that at ``contrast[s]``). Computed in float32 at least.
    """
    steps = ids.shape[0]
    return window_scores(logits[:, prompt_length - 1 : prompt_length - 1 + steps], ids, contrast)


def tail_scores(logits: Tensor, ids: Tensor, contrast: Tensor | None) -> Tensor:
    """:func:`step_scores` from the logits of :attr:`Continuation.inputs` (all of them, or only
    their last ``S`` positions, which predict the ``S`` steps)."""
    return window_scores(logits[:, -ids.shape[0] :], ids, contrast)


def window_scores(window: Tensor, ids: Tensor, contrast: Tensor | None) -> Tensor:
    """Targets ``(B, S)`` from the logits ``(B, S, V)`` of the positions predicting each step."""
    if window.dtype in (torch.float16, torch.bfloat16):
        window = window.float()
    log_probs = torch.log_softmax(window, dim=-1)
    index = ids.to(window.device)[None, :, None].expand(window.shape[0], -1, 1)
    scores = log_probs.gather(2, index)[..., 0]
    if contrast is not None:
        other = contrast.to(window.device)[None, :, None].expand(window.shape[0], -1, 1)
        scores = scores - log_probs.gather(2, other)[..., 0]
    return scores


def make_continuation(
    lm: CausalLM,
    prompt: Prompt,
    *,
    continuation: TokensLike | None = None,
    max_new_tokens: int = 16,
    sample: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
    contrast: TokensLike | int | None = None,
) -> Continuation:
    """The continuation explained: ``continuation`` if given, else generated from the prompt.

    Parameters
    ----------
    lm : CausalLM
    prompt : Prompt
    continuation : str, Tensor, list of int or None, default=None
        The tokens to explain (teacher forcing); ``None`` generates ``max_new_tokens`` tokens
        (stopping after the tokenizer's end-of-sequence token, which is kept).
    max_new_tokens : int, default=16
    sample : bool, default=False
        Sample from ``softmax(logits / temperature)`` with ``seed`` instead of greedy decoding.
    temperature : float, default=1.0
    seed : int, default=0
    contrast : str, Tensor, list of int, int or None, default=None
        Token ``B`` of each step for contrastive targets ``log p(A) - log p(B)``: one id for
        every step (an int, or a text of one token), or one per step.
    """
    if continuation is None:
        check_int(max_new_tokens, "max_new_tokens", "explain_generation", low=1)
        check_float(temperature, "temperature", "explain_generation", low=0.0, low_open=True)
        eos = getattr(lm.tokenizer, "eos_token_id", None)
        ids = lm.generate(
            prompt.ids,
            max_new_tokens,
            sample=sample,
            temperature=temperature,
            seed=seed,
            stop_ids=(int(eos),) if isinstance(eos, int) else (),
        ).cpu()
        generated = "sampled" if sample else "greedy"
    else:
        ids = _as_ids(lm, continuation, "continuation")
        generated = "given"
    contrast_ids = None
    if contrast is not None:
        if isinstance(contrast, bool):
            raise InvalidParameterError("The contrast must be token ids or a text, not a bool.")
        if isinstance(contrast, int):
            contrast_ids = torch.full_like(ids, contrast)
        else:
            contrast_ids = _as_ids(lm, contrast, "contrast")
            if contrast_ids.shape[0] == 1:
                contrast_ids = contrast_ids.expand_as(ids).clone()
        if contrast_ids.shape != ids.shape:
            raise ShapeError(
                f"The contrast needs one token per generated step ({ids.shape[0]}). Got "
                f"{contrast_ids.shape[0]} instead; give one id for every step, or one per step."
            )
    tokens = [_token_text(lm, int(i)) for i in ids]
    return Continuation(prompt, ids, tokens, contrast_ids, generated)


def _as_ids(lm: CausalLM, tokens: TokensLike, name: str) -> Tensor:
    if isinstance(tokens, str):
        if lm.tokenizer is None:
            raise InvalidParameterError(
                f"A {name} given as text needs the model's tokenizer (tokenizer=...). Pass it, "
                "or give token ids."
            )
        ids = torch.tensor(lm.tokenizer.encode(tokens, add_special_tokens=False), dtype=torch.long)
    else:
        ids = torch.as_tensor(tokens).reshape(-1)
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise ShapeError(f"The {name} must be token ids (integers). Got dtype {ids.dtype}.")
        ids = ids.long().cpu()
    if ids.numel() == 0:
        raise InvalidParameterError(f"The {name} is empty. Give at least one token.")
    return ids


def _token_text(lm: CausalLM, token: int) -> str:
    if lm.tokenizer is None:
        return str(token)
    return str(lm.tokenizer.decode([token]))
