"""The options that declare a user's model to the command line, shared by ``explain`` and
``bench``: its input size and resize policy, channel order, normalisation, what it returns,
the constants of a multi-input ONNX graph, the CPU threads to run it on, and the device,
precision and memory format of its forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from faithmap.core.devices import resolve_device
from faithmap.core.memory_format import MEMORY_FORMATS, check_memory_format
from faithmap.core.model import Model
from faithmap.core.precision import PRECISIONS, check_precision
from faithmap.core.preprocessing import NORMALISATIONS, Preprocessing, parse_size
from faithmap.core.readout import Outputs
from faithmap.errors import InvalidParameterError

SizeOption = Annotated[
    str | None,
    typer.Option(
        help="The model's input size, S or HxW (e.g. 48x192); images are resized to it. "
        "Default: 64 for the built-in models, each image's own size for your model."
    ),
]
KeepAspectOption = Annotated[
    bool,
    typer.Option(help="Resize keeping the aspect ratio and pad the rest (letterbox)."),
]
PadValueOption = Annotated[
    float, typer.Option(help="The padding value with --keep-aspect, in [0, 1] pixel space.")
]
MeanOption = Annotated[
    str | None,
    typer.Option(
        help="Normalisation the model expects on [0, 1] inputs: one value, one per channel "
        f"(0.485,0.456,0.406) or a name ({', '.join(NORMALISATIONS)}) that sets --std too."
    ),
]
StdOption = Annotated[
    str | None, typer.Option(help="Standard deviation(s) of the normalisation, like --mean.")
]
ScaleOption = Annotated[
    float, typer.Option(help="Multiply [0, 1] inputs first (255 for a model fed 0..255).")
]
ChannelsOption = Annotated[
    str, typer.Option(help="Channel order the model expects: rgb, or bgr (OpenCV-trained).")
]
OutputsOption = Annotated[
    str,
    typer.Option(
        help="What the model returns: logits, probabilities or log_probabilities (so no second "
        "softmax is applied)."
    ),
]
OnnxInputOption = Annotated[
    list[str] | None,
    typer.Option(
        help="A constant for another input of a multi-input ONNX graph: NAME=FILE.npy or "
        "NAME=NUMBER (repeatable)."
    ),
]
ThreadsOption = Annotated[
    int | None,
    typer.Option(help="torch CPU threads (torch.set_num_threads); default: torch's own."),
]

DeviceOption = Annotated[
    str | None,
    typer.Option(
        help="Where the model runs: cpu, cuda, cuda:I, mps, or auto (cuda, else mps, else cpu). "
        "An unavailable device is an error. Default: cpu."
    ),
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help=f"The forward pass's arithmetic: {', '.join(PRECISIONS)} (bf16/fp16: torch.autocast; "
        "scores and gradients stay fp32)."
    ),
]


MemoryFormatOption = Annotated[
    str,
    typer.Option(
        help=f"The layout of the model's weights and image batches: {', '.join(MEMORY_FORMATS)} "
        "(channels_last: NHWC, for torch image models; your model is given back as it was)."
    ),
]


def placed(
    model: Model, device: str | None, precision: str, memory_format: str = "contiguous"
) -> Model:
    """``model`` on ``--device`` with ``--precision`` and ``--memory-format`` (errors name the
    options)."""
    for option, value, valid in (
        ("--precision", precision, PRECISIONS),
        ("--memory-format", memory_format, MEMORY_FORMATS),
    ):
        if value not in valid:
            raise InvalidParameterError(
                f"{option} must be one of {', '.join(valid)}. Got {value!r} instead."
            )
    resolved = None if device is None else resolve_device(device, "--device")
    return model.to(
        resolved,
        precision=check_precision(precision),
        memory_format=check_memory_format(memory_format),
    )


def load_declared(
    spec: str,
    architecture: str | None,
    trust_pickle: bool,
    batch_size: int | None,
    **declared: Any,
) -> Model:
    """The model ``spec`` names (:func:`faithmap.zoo.loaders.load_model`), declared as the
    options say."""
    from faithmap.zoo.loaders import load_model

    return load_model(
        spec,
        architecture=architecture,
        trust_pickle=trust_pickle,
        batch_size=batch_size,
        **declared,
    )


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` (an error below 1)."""
    if threads is None:
        return
    if threads < 1:
        raise InvalidParameterError(f"--threads must be at least 1. Got {threads} instead.")
    torch.set_num_threads(threads)


def declared_preprocessing(
    size: str | None,
    *,
    keep_aspect: bool,
    pad_value: float,
    mean: str | None,
    std: str | None,
    scale: float,
    channels: str,
) -> Preprocessing:
    """The :class:`Preprocessing` the options declare (errors name the option)."""
    try:
        return Preprocessing(
            size=None if size is None else parse_size(size, "--size"),
            keep_aspect=keep_aspect,
            pad_value=pad_value,
            channels=channels,  # type: ignore[arg-type]  # checked by Preprocessing
            scale=scale,
            mean=mean,
            std=std,
        )
    except InvalidParameterError as err:
        raise InvalidParameterError(str(err).replace("of Preprocessing", "option")) from err


def declared_outputs(outputs: str) -> Outputs:
    """``--outputs`` checked."""
    choices = ("logits", "probabilities", "log_probabilities")
    if outputs not in choices:
        raise InvalidParameterError(
            f"--outputs must be one of {', '.join(choices)}. Got {outputs!r} instead."
        )
    return outputs  # type: ignore[return-value]  # checked above


def onnx_inputs(texts: list[str] | None) -> dict[str, Any]:
    """``["mask=mask.npy", "scale=2"]`` as ``{name: array}``."""
    constants: dict[str, Any] = {}
    for text in texts or []:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise InvalidParameterError(
                f"--onnx-input must look like NAME=FILE.npy or NAME=NUMBER. Got {text!r} instead."
            )
        if value.endswith(".npy"):
            if not Path(value).is_file():
                raise InvalidParameterError(f"--onnx-input {name}: no file {value!r}.")
            constants[name] = np.load(value, allow_pickle=False)
        else:
            try:
                constants[name] = np.asarray(float(value))
            except ValueError as err:
                raise InvalidParameterError(
                    f"--onnx-input {name}: {value!r} is neither a .npy file nor a number."
                ) from err
    return constants
