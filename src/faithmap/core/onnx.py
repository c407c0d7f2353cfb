"""ONNX Runtime sessions as plain callables; :meth:`faithmap.Model.from_onnx` wraps one.

ONNX Runtime is an optional dependency: ``pip install "faithmap[onnx]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from faithmap.errors import FileProblemError, MissingDependencyError, ModelError


class OnnxSession:
    """A numpy-in, numpy-out callable running one ONNX Runtime inference session.

    Torch inputs are handed to the session as numpy arrays of the dtype the graph declares; the
    first output is returned.
    """

    def __init__(self, session: Any) -> None:
        self.session = session
        (first, *rest) = session.get_inputs()
        if rest:
            raise ModelError(
                f"faithmap explains models with one input; this ONNX graph has {1 + len(rest)} "
                f"({', '.join(i.name for i in session.get_inputs())}). Export a graph that takes "
                "one batched tensor."
            )
        self.input_name = first.name
        self.dtype = np.float64 if first.type == "tensor(double)" else np.float32

    def __repr__(self) -> str:
        return f"OnnxSession(input={self.input_name!r})"

    def __call__(self, batch: Tensor) -> np.ndarray[Any, Any]:
        array = batch.detach().cpu().numpy().astype(self.dtype, copy=False)
        (output, *_) = self.session.run(None, {self.input_name: array})
        return np.asarray(output)


def open_session(path: str | Path, *, providers: Sequence[str] | None = None) -> OnnxSession:
    """An :class:`OnnxSession` running the ONNX file ``path``.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; its graph takes one batched input and returns ``(B, C)`` outputs
        (export with a dynamic batch axis so any batch size works).
    providers : sequence of str or None, default=None
        ONNX Runtime execution providers, e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``; ``None``: the CPU provider.

    Raises
    ------
    MissingDependencyError
        If ONNX Runtime is not installed.
    FileProblemError
        If the file is missing.
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependencyError(
            'Model.from_onnx needs ONNX Runtime. Install it with: pip install "faithmap[onnx]"'
        ) from err
    file = Path(path)
    if not file.is_file():
        raise FileProblemError(f"No ONNX file at {str(file)!r}. Check the path.")
    session = onnxruntime.InferenceSession(
        str(file), providers=list(providers or ["CPUExecutionProvider"])
    )
    return OnnxSession(session)
