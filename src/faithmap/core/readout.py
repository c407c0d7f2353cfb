"""Reading a model's outputs: softmax probabilities, the raw outputs, or log-odds.

What a classifier returns is declared (:data:`Outputs`), so each readout is computed from it:
probabilities never get a second softmax, log-probabilities are exponentiated, and the
log-odds ``log p - log(1 - p)`` stay exact where probabilities saturate. Only ``(B, C)`` class
scores have a class readout; other outputs (a detector's) are read raw through a callable
target.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from faithmap.core.constraints import options
from faithmap.errors import TargetError

Activation = Literal["softmax", "logits", "log_odds"]
"""The readout of a model's outputs: ``"softmax"`` (class probabilities), ``"logits"`` (the raw
outputs, whatever the model returns) or ``"log_odds"`` (``log p - log(1 - p)``, which does not
saturate where probabilities do)."""
Outputs = Literal["logits", "probabilities", "log_probabilities"]
"""What a classifier returns; it decides how each readout is computed (never a second softmax)."""
ACTIVATION = options(get_args(Activation))
"""The constraint of an ``activation`` parameter."""


def _logit_log_odds(logits: Tensor) -> Tensor:
    """``log p_c - log(1 - p_c)`` of softmax probabilities, exact where ``p_c`` rounds to 1.

    ``log(1 - p_c)`` is the log-sum-exp of the other classes minus that of all; it is computed
    that way for each row's top class (the one that saturates) and as ``log(-expm1(log p))``
    for the others, whose ``p <= 0.5`` keeps it accurate, so the cost stays ``O(B C)``.
    """
    log_p = logits.log_softmax(dim=1)
    total = logits.logsumexp(dim=1, keepdim=True)
    top = logits.argmax(dim=1, keepdim=True)
    without_top = logits.scatter(1, top, float("-inf")).logsumexp(dim=1, keepdim=True)
    log_rest = (-torch.expm1(log_p.clamp(max=-torch.finfo(logits.dtype).eps))).log()
    is_top = torch.zeros_like(logits, dtype=torch.bool).scatter(1, top, True)
    return log_p - torch.where(is_top, without_top - total, log_rest)


def check_class_scores(output_shape: tuple[int, ...] | None, reading: str) -> None:
    """Raise unless outputs of ``(B, *output_shape)`` are class scores ``(B, C)``."""
    if output_shape is None or len(output_shape) == 1:
        return
    shape = f"(B, {', '.join(map(str, output_shape))})"
    fix = (
        "Pass activation='logits' so a callable target reads the raw outputs."
        if "readout" in reading
        else "Pass a callable target that maps the outputs to one score per row (e.g. a "
        "detector's best box score for one object)."
    )
    raise TargetError(
        f"The model's outputs have shape {shape}, not (B, C) class scores, so {reading} is "
        f"not defined. {fix}"
    )


def read_out(output: Tensor, activation: Activation, outputs: Outputs) -> Tensor:
    """The ``activation`` readout of raw ``output`` from a model that returns ``outputs``."""
    if activation == "logits":
        return output
    check_class_scores(tuple(output.shape[1:]), f"the {activation!r} readout")
    if activation == "softmax":
        if outputs == "logits":
            return output.softmax(dim=1)
        return output.exp() if outputs == "log_probabilities" else output
    eps = torch.finfo(output.dtype).eps
    if outputs == "probabilities":
        p = output.clamp(min=torch.finfo(output.dtype).tiny, max=1.0 - eps / 2)
        return p.log() - (-p).log1p()
    if outputs == "log_probabilities":
        log_p = output.clamp(max=-eps)
        return log_p - (-torch.expm1(log_p)).log()
    return _logit_log_odds(output)
