"""What a method explains: the output score each sample is attributed against.

A target is given as ``None`` (the predicted class), an ``int`` (one class for every sample),
an ``(N,)`` integer tensor or sequence (one class per sample), or a callable mapping the model's
output of a batch to one score per row (detection, segmentation, regression). Callables must
score each row on its own: faithmap calls them on batches of perturbed copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.constraints import ConstraintList, Satisfies
from faithmap.errors import TargetError

TargetLike = None | int | Sequence[int] | Tensor | Callable[[Tensor], Tensor]


def is_target_like(value: object) -> bool:
    """Whether ``value`` has a :data:`TargetLike` form (its range is checked when resolved)."""
    if value is None or callable(value) or isinstance(value, Tensor):
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str)


TARGET: ConstraintList = [
    Satisfies(
        is_target_like,
        "None (the predicted class), an int, one int per sample or a callable score",
        invalid="cat",
    )
]
"""The constraint of a ``target`` parameter."""


@dataclass(frozen=True)
class Target:
    """A resolved target for a batch of ``N`` samples.

    Exactly one of ``classes`` (``(N,)`` int64 on the model's device) and ``score_fn`` is set.
    """

    classes: Tensor | None = None
    score_fn: Callable[[Tensor], Tensor] | None = None

    def select(self, output: Tensor, samples: Tensor) -> Tensor:
        """Score of each row of ``output``; row ``j`` belongs to sample ``samples[j]``."""
        if self.classes is not None:
            return output.gather(1, self.classes[samples].unsqueeze(1)).squeeze(1)
        assert self.score_fn is not None  # invariant of the dataclass, not user input
        scores = self.score_fn(output)
        if not isinstance(scores, Tensor) or scores.shape != (output.shape[0],):
            got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
            raise TargetError(
                f"A callable target must return one score per row, a tensor of shape "
                f"({output.shape[0]},). Got {got} instead."
            )
        return scores

    def subset(self, index: Tensor) -> Target:
        """The target of the samples ``index`` of the batch."""
        if self.classes is None:
            return self
        return Target(classes=self.classes[index])


def resolve_target(
    target: TargetLike,
    n: int,
    num_outputs: int | None,
    predicted: Callable[[], Tensor],
    device: torch.device,
) -> Target:
    """Turn any accepted target form into a :class:`Target`.

    ``predicted`` is called (one forward pass per sample) only when ``target`` is ``None``;
    ``num_outputs`` is the width of the model's output, used to check class indices.
    """
    if callable(target) and not isinstance(target, Tensor):
        return Target(score_fn=target)
    if target is None:
        classes = predicted().to(device=device, dtype=torch.long)
    elif isinstance(target, bool):
        raise TargetError(f"A target must be a class index, not a bool. Got {target!r} instead.")
    elif isinstance(target, int):
        classes = torch.full((n,), target, dtype=torch.long, device=device)
    else:
        if isinstance(target, Tensor):
            if target.is_floating_point() or target.is_complex():
                raise TargetError(
                    f"A target tensor must hold integer class indices. Got dtype {target.dtype} "
                    "instead; use target.long() if the values are whole numbers."
                )
            classes = target.to(device=device, dtype=torch.long).reshape(-1)
            if target.dim() > 1:
                raise TargetError(
                    f"A target tensor must have shape ({n},). Got {tuple(target.shape)} instead."
                )
        else:
            try:
                classes = torch.as_tensor(list(target), dtype=torch.long, device=device)
            except (TypeError, ValueError) as err:
                raise TargetError(
                    "A target must be None, an int, a sequence or tensor of ints, or a callable "
                    f"on the model output. Got {type(target).__name__} instead."
                ) from err
        if classes.numel() == 1 and n != 1:
            classes = classes.expand(n).clone()
        if classes.shape != (n,):
            raise TargetError(
                f"The target has {classes.numel()} entries but the batch has {n} samples. "
                "Give one class index per sample, or a single int for all."
            )
    if num_outputs is not None and classes.numel() > 0:
        low, high = int(classes.min()), int(classes.max())
        if low < 0 or high >= num_outputs:
            bad = low if low < 0 else high
            raise TargetError(
                f"Target class {bad} is out of range: the model has {num_outputs} outputs, so "
                f"class indices must be in [0, {num_outputs - 1}]."
            )
    return Target(classes=classes)
