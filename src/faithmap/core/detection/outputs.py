"""Structured model outputs (a ``ModelOutput``, one dict per image) on their way to a target.

:class:`faithmap.Model` passes a detector's dicts and lists on to a callable target as they
are; these helpers check them, count their rows and word the errors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from faithmap.errors import ModelError, TargetError


def structured_output(output: object, rows: int) -> str:
    """Check a model output that is not a tensor and say what it is, for messages.

    A mapping of batched tensors (a ``transformers`` ``ModelOutput``: its first tensor has one
    row per sample) or one dict per sample (torchvision's detectors) is passed on as it is to
    a callable target; anything else, or the wrong number of rows, is a :class:`ModelError`.
    """
    if isinstance(output, Mapping):
        first = next((v for v in output.values() if isinstance(v, Tensor)), None)
        found = int(first.shape[0]) if first is not None and first.dim() > 0 else None
        what = f"a {type(output).__name__} of tensors"
    elif (
        isinstance(output, list | tuple) and output and all(isinstance(o, Mapping) for o in output)
    ):
        found, what = len(output), "one dict per image"
    else:
        raise ModelError(
            "The model must return a tensor (or numpy array) with one row per sample, or a "
            "detector's structured outputs: a mapping of batched tensors (a Hugging Face "
            f"ModelOutput) or one dict per image. Got {type(output).__name__} instead; wrap it "
            "so it returns the output tensor."
        )
    if found != rows:
        raise ModelError(
            f"The model must return one output row per sample: it returned {what} with "
            f"{found} rows for a batch of {rows}."
        )
    return what


def structured_total(output: object) -> Tensor:
    """The sum of every floating-point tensor of a structured output: one number that depends
    on the input wherever the output does (the batch-size measurement's backward pass)."""
    parts = output if isinstance(output, list | tuple) else [output]
    values = [v for part in parts if isinstance(part, Mapping) for v in part.values()]
    floats = [v.sum() for v in values if isinstance(v, Tensor) and v.is_floating_point()]
    return torch.stack(floats).sum() if floats else torch.zeros(())


def not_class_scores(what: str, reading: str) -> TargetError:
    """The error for reading classes (``reading``) from a structured output."""
    return TargetError(
        f"The model returns {what} (a detector's outputs), not (B, C) class scores, so "
        f"{reading} is not defined. Explain one object with a callable target such as "
        "faithmap.BoxTarget(box=..., label=..., adapter=...), read with activation='logits'."
    )
