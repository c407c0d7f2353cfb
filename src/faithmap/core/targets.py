"""What a method explains: the output score each sample is attributed against.

A target is given as ``None`` (the predicted class), an ``int`` (one class for every sample),
an ``(N,)`` integer tensor or sequence (one class per sample), a callable mapping the model's
output of a batch to one score per row (detection, segmentation, regression), or one such
callable per sample (each object of each image its own score). Callables receive the raw
outputs, whatever their shape, and must score each row on its own: faithmap calls them on
batches of perturbed copies. Class targets need ``(B, C)`` class-score outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from faithmap.core.constraints import ConstraintList, Satisfies
from faithmap.errors import TargetError

ScoreFunction = Callable[[Tensor], Tensor]
"""A callable target: the model's outputs of a batch ``(B, ...)`` to one score per row ``(B,)``."""
TargetLike = None | int | Sequence[int] | Tensor | ScoreFunction | Sequence[ScoreFunction]


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
        "None (the predicted class), an int, one int per sample, a callable score or one "
        "callable per sample",
        invalid="cat",
    )
]
"""The constraint of a ``target`` parameter."""


@dataclass(frozen=True)
class Target:
    """A resolved target for a batch of ``N`` samples.

    Exactly one of ``classes`` (``(N,)`` int64 on the model's device), ``score_fn`` (one
    callable for every sample) and ``score_fns`` (one callable per sample) is set.
    """

    classes: Tensor | None = None
    score_fn: ScoreFunction | None = None
    score_fns: tuple[ScoreFunction, ...] | None = None

    @property
    def function(self) -> ScoreFunction | tuple[ScoreFunction, ...] | None:
        """The callable target (or one per sample), ``None`` for class targets."""
        return self.score_fn if self.score_fn is not None else self.score_fns

    def select(self, output: Tensor, samples: Tensor) -> Tensor:
        """Score of each row of ``output``; row ``j`` belongs to sample ``samples[j]``.

        ``output`` may also be a detector's structured outputs (a mapping of batched tensors,
        one dict per image), which only callable targets read, each given the whole batch.
        """
        raw: object = output
        if self.classes is not None:
            if not isinstance(raw, Tensor) or output.dim() != 2:
                shape = tuple(output.shape) if isinstance(raw, Tensor) else type(raw).__name__
                raise TargetError(
                    f"A class target reads (B, C) class scores, but the model's outputs are "
                    f"{shape}. Pass a callable target that maps the outputs to one score per row."
                )
            return output.gather(1, self.classes[samples].unsqueeze(1)).squeeze(1)
        if self.score_fn is not None:
            return _checked(self.score_fn(output), samples.shape[0])
        assert self.score_fns is not None  # invariant of the dataclass, not user input
        groups: dict[int, list[int]] = {}  # rows by function, so each is called once
        for row, sample in enumerate(samples.tolist()):
            groups.setdefault(id(self.score_fns[sample]), []).append(row)
        scores = output.new_zeros(output.shape[0]) if isinstance(raw, Tensor) else None
        for positions in groups.values():
            function = self.score_fns[int(samples[positions[0]])]
            if isinstance(raw, Tensor):
                rows = torch.tensor(positions, device=output.device)
                values = _checked(function(output[rows]), rows.shape[0])
            else:  # structured outputs are not sliced: the function scores every row
                every = _checked(function(output), samples.shape[0])
                rows = torch.tensor(positions, device=every.device)
                values = every[rows]
            scores = values.new_zeros(samples.shape[0]) if scores is None else scores
            scores = scores.index_put((rows,), values.to(scores.dtype))
        assert scores is not None  # at least one sample, hence one group
        return scores

    def subset(self, index: Tensor) -> Target:
        """The target of the samples ``index`` of the batch."""
        if self.classes is not None:
            return Target(classes=self.classes[index])
        if self.score_fns is not None:
            return Target(score_fns=tuple(self.score_fns[i] for i in index.tolist()))
        return self


def _checked(scores: object, rows: int) -> Tensor:
    """``scores`` if it is one score per row, else a clear error."""
    if not isinstance(scores, Tensor) or scores.shape != (rows,):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise TargetError(
            f"A callable target must return one score per row, a tensor of shape ({rows},). "
            f"Got {got} instead."
        )
    return scores


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
    if isinstance(target, list | tuple) and any(callable(t) for t in target):
        functions = tuple(target)
        if not all(callable(f) for f in functions) or len(functions) != n:
            raise TargetError(
                f"A per-sample target must hold one callable per sample ({n}). Got "
                f"{len(functions)} entries, {sum(map(callable, functions))} of them callable."
            )
        return Target(score_fns=functions)
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
