"""Black boxes from ONNX files: a :class:`~faithmap.Model` over an ONNX Runtime session.

ONNX Runtime is an optional dependency: ``pip install "faithmap[onnx]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from faithmap.errors import FaithmapError, ModelError
from faithmap.model import Model


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


def onnx_model(
    path: str | Path,
    *,
    batch_size: int | None = None,
    providers: Sequence[str] | None = None,
) -> Model:
    """A :class:`~faithmap.Model` running the ONNX file ``path`` with ONNX Runtime.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; its graph takes one batched input and returns ``(B, C)`` logits
        (export with a dynamic batch axis so any batch size works).
    batch_size : int or None, default=None
        Rows per session call; ``None`` measures the fastest.
    providers : sequence of str or None, default=None
        ONNX Runtime execution providers, e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``; ``None``: the CPU provider.

    Raises
    ------
    FaithmapError
        If ONNX Runtime is not installed or the file is missing.
    """
    try:
        import onnxruntime
    except ImportError as err:
        raise FaithmapError(
            'Model.from_onnx needs ONNX Runtime. Install it with: pip install "faithmap[onnx]"'
        ) from err
    file = Path(path)
    if not file.is_file():
        raise FaithmapError(f"No ONNX file at {str(file)!r}. Check the path.")
    session = onnxruntime.InferenceSession(
        str(file), providers=list(providers or ["CPUExecutionProvider"])
    )
    return Model(OnnxSession(session), batch_size=batch_size)
