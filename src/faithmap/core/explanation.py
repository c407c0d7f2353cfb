"""``Explanation``: what a method returns, and the record the benchmark stores."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from faithmap.core.cost import Cost
from faithmap.core.targets import ScoreFunction
from faithmap.errors import FileProblemError, ShapeError


@dataclass(frozen=True)
class Explanation:
    """Attributions of a batch, with the configuration and cost that produced them.

    Attributes
    ----------
    attributions : Tensor
        Raw values on the inputs' device, no rescaling: ``(N, 1, H, W)`` for images (channels
        reduced as the method's ``reduce`` says), the inputs' shape otherwise.
    method : str
        The registered name of the method.
    config : Mapping
        The method's parameters as recorded (JSON-friendly: a background tensor is described by
        its shape and hash), enough to reproduce the result; what :meth:`save` writes.
    target : Tensor or None
        The explained class of each sample ``(N,)``, or ``None`` for a callable target.
    score : callable, tuple of callables or None
        The callable target (or one per sample) that was explained, ``None`` for classes;
        metrics score it unless told otherwise. Not saved: a loaded explanation has ``None``.
    model : Mapping
        What was declared about the model: ``outputs`` and ``preprocessing`` (see
        :meth:`faithmap.Model.record`); saved with the explanation.
    cost : Cost
        Forward and backward passes and seconds spent, target resolution included.
    ranking : Tensor or None
        ``(N, R)`` region indices, most important first, for methods that rank regions.
    curves : Mapping
        Curves recorded while explaining (for example insertion and deletion scores of
        subset-selection searches), each ``(N, steps + 1)``.
    params : Mapping
        The method's parameters as values (tensors and regions themselves), for metrics that
        explain again; empty for a loaded explanation, which has only ``config``.
    """

    attributions: Tensor
    method: str
    config: Mapping[str, Any]
    target: Tensor | None
    cost: Cost
    score: ScoreFunction | tuple[ScoreFunction, ...] | None = field(
        default=None, repr=False, compare=False
    )
    model: Mapping[str, Any] = field(default_factory=dict)
    ranking: Tensor | None = None
    curves: Mapping[str, Tensor] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.attributions.shape[0])

    @property
    def seed(self) -> int | None:
        """The seed the method used, if it is random."""
        seed = self.config.get("seed")
        return int(seed) if seed is not None else None

    def save(self, path: str | Path) -> Path:
        """Write the raw attributions (and ranking, target) as safetensors, config as metadata."""
        from safetensors.torch import save_file

        tensors = {"attributions": self.attributions.detach().cpu().contiguous()}
        if self.target is not None:
            tensors["target"] = self.target.detach().cpu().contiguous()
        if self.ranking is not None:
            tensors["ranking"] = self.ranking.detach().cpu().contiguous()
        path = Path(path)
        save_file(tensors, str(path), metadata=self.metadata())
        return path

    def metadata(self) -> dict[str, str]:
        """What :meth:`save` writes besides the tensors: method, config, model and cost."""
        cost = {
            "forward": self.cost.forward,
            "backward": self.cost.backward,
            "seconds": self.cost.seconds,
            "calibration_seconds": self.cost.calibration_seconds,
        }
        return {
            "method": self.method,
            "config": json.dumps(dict(self.config), default=repr),
            "model": json.dumps(dict(self.model), default=repr),
            "cost": json.dumps(cost),
        }

    @staticmethod
    def load(path: str | Path) -> Explanation:
        """Read an explanation written by :meth:`save`.

        Raises
        ------
        FileProblemError
            If the file is missing, unreadable, not a safetensors file, or a safetensors file
            that :meth:`save` did not write (no attributions, metadata that is not JSON).
        """
        from safetensors import safe_open

        file = Path(path)
        if not file.is_file():
            raise FileProblemError(f"No explanation file at {str(file)!r}. Check the path.")
        try:
            with safe_open(str(file), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error types for bad files
            reason = (str(err).splitlines() or [""])[0]
            raise FileProblemError(
                f"Could not read {str(file)!r} as an explanation: it is not a readable "
                f"safetensors file ({type(err).__name__}: {reason}). Give a file written by "
                "Explanation.save."
            ) from err
        if "attributions" not in tensors or "method" not in metadata:
            raise FileProblemError(
                f"{str(file)!r} is a safetensors file but not a faithmap explanation (no "
                "'attributions' tensor or 'method' metadata). Give a file written by "
                "Explanation.save."
            )
        try:
            cost = json.loads(metadata.get("cost", "{}"))
            config = json.loads(metadata.get("config", "{}"))
            model = json.loads(metadata.get("model", "{}"))
            spent = Cost(
                int(cost.get("forward", 0)),
                int(cost.get("backward", 0)),
                float(cost.get("seconds", 0.0)),
                float(cost.get("calibration_seconds", 0.0)),
            )
        except (ValueError, TypeError, AttributeError) as err:
            raise FileProblemError(
                f"The metadata of {str(file)!r} is not what Explanation.save writes "
                f"({type(err).__name__}: {err}); the file was changed or written by another tool."
            ) from err
        return Explanation(
            attributions=tensors["attributions"],
            method=metadata["method"],
            config=config,
            target=tensors.get("target"),
            model=model,
            cost=spent,
            ranking=tensors.get("ranking"),
        )


def attribution_map(explanation: object) -> Tensor:
    """The attributions of an :class:`Explanation` or a tensor, as a float tensor."""
    values = explanation.attributions if isinstance(explanation, Explanation) else explanation
    if not isinstance(values, Tensor):
        raise ShapeError(
            "An explanation must be a faithmap.Explanation or a tensor of attributions. Got "
            f"{type(values).__name__} instead."
        )
    return values.float() if not values.is_floating_point() else values
