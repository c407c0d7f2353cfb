"""ONNX Runtime sessions as plain callables; :meth:`faithmap.Model.from_onnx` wraps one.

ONNX Runtime is an optional dependency: ``pip install "faithmap[onnx]"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from faithmap.errors import FileProblemError, MissingDependencyError, ModelError


class OnnxSession:
    """A numpy-in, numpy-out callable running one ONNX Runtime inference session.

    Torch inputs are handed to the session's explained input as numpy arrays of the dtype the
    graph declares; the graph's other inputs get the constants in ``extra_inputs`` (repeated
    along the batch when their first axis is the batch); one output is returned.
    """

    def __init__(
        self,
        session: Any,
        *,
        extra_inputs: Mapping[str, Any] | None = None,
        output: int | str = 0,
    ) -> None:
        self.session = session
        inputs = list(session.get_inputs())
        extra = dict(extra_inputs or {})
        names = [i.name for i in inputs]
        unknown = sorted(set(extra) - set(names))
        if unknown:
            raise ModelError(
                f"extra_inputs names {unknown}, which this ONNX graph does not take. Its inputs "
                f"are: {', '.join(names)}."
            )
        free = [i for i in inputs if i.name not in extra]
        if len(free) != 1:
            raise ModelError(
                f"faithmap explains one input of an ONNX graph; this graph has {len(inputs)} "
                f"({', '.join(names)}) and {len(free)} without a constant. Give the others as "
                "Model.from_onnx(path, extra_inputs={name: array}) (or --onnx-input name=file.npy "
                "on the command line)."
            )
        self.input_name = free[0].name
        self.dtype = _numpy_dtype(free[0].type)
        self.extra = {
            i.name: np.asarray(extra[i.name], dtype=_numpy_dtype(i.type))
            for i in inputs
            if i.name in extra
        }
        self.batched = {i.name for i in inputs if i.name in extra and _has_batch_axis(i.shape)}
        outputs = [o.name for o in session.get_outputs()]
        if isinstance(output, str):
            if output not in outputs:
                raise ModelError(
                    f"This ONNX graph has no output {output!r}. Its outputs are: "
                    f"{', '.join(outputs)}."
                )
            self.output_name = output
        else:
            if not 0 <= output < len(outputs):
                raise ModelError(
                    f"This ONNX graph has {len(outputs)} output(s) ({', '.join(outputs)}); output "
                    f"index {output} does not exist."
                )
            self.output_name = outputs[output]

    def __repr__(self) -> str:
        return f"OnnxSession(input={self.input_name!r}, output={self.output_name!r})"

    def __call__(self, batch: Tensor) -> np.ndarray[Any, Any]:
        array = batch.detach().cpu().numpy().astype(self.dtype, copy=False)
        feed = {self.input_name: array}
        for name, value in self.extra.items():
            if name in self.batched and value.shape[:1] == (1,) and array.shape[0] != 1:
                value = np.repeat(value, array.shape[0], axis=0)
            feed[name] = value
        (output,) = self.session.run([self.output_name], feed)
        return np.asarray(output)


_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
}


def _numpy_dtype(onnx_type: str) -> Any:
    """The numpy dtype of an ONNX tensor type string (float32 when unknown)."""
    return _DTYPES.get(onnx_type, np.float32)


def _has_batch_axis(shape: Sequence[Any]) -> bool:
    """Whether an input's declared first axis is symbolic (a batch axis)."""
    return len(shape) > 0 and not isinstance(shape[0], int)


def open_session(
    path: str | Path,
    *,
    providers: Sequence[str] | None = None,
    extra_inputs: Mapping[str, Any] | None = None,
    output: int | str = 0,
) -> OnnxSession:
    """An :class:`OnnxSession` running the ONNX file ``path``.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; export it with a dynamic batch axis so any batch size works.
    providers : sequence of str or None, default=None
        ONNX Runtime execution providers, e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``; ``None``: the CPU provider.
    extra_inputs : mapping or None, default=None
        Constants for every graph input but the explained one, by input name (e.g. an image
        size or a mask); one with a batch axis of 1 is repeated over each batch.
    output : int or str, default=0
        The graph output the model returns, by index or name.

    Raises
    ------
    MissingDependencyError
        If ONNX Runtime is not installed.
    FileProblemError
        If the file is missing.
    ModelError
        If the graph's inputs or outputs do not match ``extra_inputs`` and ``output``.
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
    try:
        session = onnxruntime.InferenceSession(
            str(file), providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as err:
        raise ModelError(
            f"ONNX Runtime could not load {str(file)!r} ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}). Check that it is an ONNX model."
        ) from err
    return OnnxSession(session, extra_inputs=extra_inputs, output=output)
