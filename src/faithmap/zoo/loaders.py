"""Load the models people have: files, import paths and named models of the big libraries.

One function, :func:`load_model`, turns a model specification into a :class:`faithmap.Model`:

- a built-in name: ``"cnn"``, ``"resnet"``, ``"vit"`` (:func:`faithmap.zoo.load_builtin`);
- a TorchScript file (``torch.jit.save``), read with :func:`torch.jit.load`;
- a state dict (``.pt``, ``.pth``, ``.bin`` via ``torch.save``, or ``.safetensors``) together with
  ``architecture="package.module:ClassName"`` and its keyword ``options``;
- an ONNX file (``.onnx``), run by ONNX Runtime (:meth:`faithmap.Model.from_onnx`);
- ``"torchvision:NAME"``, ``"timm:NAME"`` and ``"hf:NAME_OR_DIR"`` (or a directory written by
  ``save_pretrained``), when the package is installed and the weights are already on disk:
  nothing is ever downloaded.

Loading is safe by default. ``torch.load`` runs with ``weights_only=True``, which reads tensors
and plain containers only; a checkpoint that pickles Python objects (a whole ``nn.Module``, a
custom class) could run arbitrary code when read, and is refused unless ``trust_pickle=True``.
"""

from __future__ import annotations

import importlib
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from faithmap.core.model import Model
from faithmap.core.preprocessing import Preprocessing
from faithmap.core.readout import Outputs
from faithmap.errors import (
    FileProblemError,
    InvalidParameterError,
    MissingDependencyError,
    ModelError,
)
from faithmap.zoo import BUILTIN_MODELS, ZOO_MODELS, load_builtin
from faithmap.zoo.libraries import (
    hugging_face_preprocessing,
    load_hugging_face,
    load_timm,
    load_torchvision,
)

__all__ = ["load_model"]

_SPEC_FORMS = (
    f"a built-in name ({', '.join(BUILTIN_MODELS)}), a TorchScript, state-dict (.pt, .pth, .bin, "
    ".safetensors) or ONNX (.onnx) file, a Hugging Face save_pretrained directory, or "
    "'torchvision:NAME', 'timm:NAME', 'hf:NAME_OR_DIR'"
)
# Keys under which training scripts commonly nest the state dict of a checkpoint.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")


def load_model(
    spec: str | Path,
    *,
    architecture: str | None = None,
    options: Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    batch_size: int | None = None,
    outputs: Outputs = "logits",
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    extra_inputs: Mapping[str, Any] | None = None,
) -> Model:
    """Load a model from a file, an import path or a library name, ready to explain.

    PyTorch models come back on the CPU in eval mode, wrapped in a :class:`faithmap.Model`
    (the module is ``model.module``).

    Parameters
    ----------
    spec : str or Path
        One of: a built-in name (``"cnn"``, ``"resnet"``, ``"vit"``); the path of a TorchScript
        file, a state dict (``.pt``, ``.pth``, ``.bin``, ``.safetensors``), a pickled model
        (only with `trust_pickle`), an ONNX file (``.onnx``) or a Hugging Face
        ``save_pretrained`` directory; ``"torchvision:NAME"`` (weights from the torch hub cache,
        ``$TORCH_HOME/hub/checkpoints``); ``"timm:NAME"`` (weights from the Hugging Face cache);
        ``"hf:NAME_OR_DIR"`` (a directory or a model in the Hugging Face cache).
    architecture : str or None, default=None
        For a state dict: the import path ``"package.module:ClassName"`` of the model's class,
        or of a function returning the module (``"torchvision.models:resnet18"``).
    options : mapping or None, default=None
        Keyword arguments for `architecture`, e.g. ``{"num_classes": 6}``.
    trust_pickle : bool, default=False
        Read ``torch.save`` files with ``weights_only=False``. Unpickling runs code chosen by
        whoever wrote the file: only for checkpoints from a source you trust.
    batch_size : int or None, default=None
        Rows per model call, passed to :class:`faithmap.Model`; ``None`` measures the fastest.
    outputs : {"logits", "probabilities", "log_probabilities"}, default="logits"
        What the model returns, passed to :class:`faithmap.Model`.
    preprocessing : Preprocessing, mapping or None, default=None
        What the model expects (size, channel order, normalisation), applied inside each call.
        ``None`` for a Hugging Face image model reads its ``preprocessor_config.json``
        (normalisation, exact size) when one was saved with it.
    extra_inputs : mapping or None, default=None
        For an ONNX graph with several inputs: constants for all but the explained one.

    Returns
    -------
    Model
        The loaded model.

    Raises
    ------
    FileProblemError
        If the file or weights are missing (the message says where to put the weights) or
        unreadable, or a pickled checkpoint is given without `trust_pickle`.
    MissingDependencyError
        If a package is not installed (the message says what to install).
    InvalidParameterError
        If `spec` or `architecture` is malformed, or a name is unknown to its library or
        module.
    ModelError
        If the weights do not fit the architecture, or building the architecture fails.

    References
    ----------
    PyTorch documentation, "Serialization semantics" (``torch.load(weights_only=True)``).

    Examples
    --------
    >>> model = load_model("cnn", batch_size=8)
    >>> model.module.training
    False
    """
    if not isinstance(spec, str | Path) or str(spec) == "":
        raise InvalidParameterError(
            f"The 'spec' parameter of load_model must be {_SPEC_FORMS}. Got {spec!r} instead."
        )
    if architecture is not None and not isinstance(architecture, str):
        raise InvalidParameterError(
            "The 'architecture' parameter of load_model must be an import path "
            f"'package.module:ClassName' or None. Got {architecture!r} instead."
        )
    if not isinstance(trust_pickle, bool):
        raise InvalidParameterError(
            f"The 'trust_pickle' parameter of load_model must be a bool. Got {trust_pickle!r} "
            "instead."
        )
    text = str(spec)
    path = Path(spec)
    if architecture is not None and (
        text.endswith(".onnx")
        or text in ZOO_MODELS
        or text.startswith(("torchvision:", "timm:", "hf:"))
        or path.is_dir()
    ):
        raise InvalidParameterError(
            f"architecture={architecture!r} builds the class of a state-dict file; {text!r} "
            "carries its own architecture. Leave --architecture out."
        )
    if text.endswith(".onnx"):
        return Model.from_onnx(
            path,
            batch_size=batch_size,
            outputs=outputs,
            preprocessing=preprocessing,
            extra_inputs=extra_inputs,
        )
    if extra_inputs:
        raise InvalidParameterError(
            "extra_inputs are constants for the other inputs of an ONNX graph; "
            f"{text!r} is not an ONNX file."
        )
    if isinstance(spec, str) and spec in ZOO_MODELS:
        module = load_builtin(spec)
    elif isinstance(spec, str) and spec.startswith(("torchvision:", "timm:", "hf:")):
        library, _, name = spec.partition(":")
        if not name:
            raise InvalidParameterError(
                f"The 'spec' parameter of load_model must name a model after {library!r}, e.g. "
                f"'{library}:resnet18'. Got {spec!r} instead."
            )
        loader = {"torchvision": load_torchvision, "timm": load_timm, "hf": load_hugging_face}[
            library
        ]
        module = loader(name)
        if library == "hf" and preprocessing is None:
            preprocessing = hugging_face_preprocessing(name)
    elif path.is_dir() and (path / "config.json").is_file():
        module = load_hugging_face(text)
        if preprocessing is None:
            preprocessing = hugging_face_preprocessing(text)
    elif path.is_file():
        module = _from_file(path, architecture, options, trust_pickle)
    else:
        raise FileProblemError(
            f"No model file or known model name {text!r}. Give {_SPEC_FORMS}; check the path."
        )
    return Model(module.eval(), batch_size=batch_size, outputs=outputs, preprocessing=preprocessing)


def _from_file(
    path: Path, architecture: str | None, options: Mapping[str, Any] | None, trust_pickle: bool
) -> nn.Module:
    """A TorchScript module, a pickled module (trusted only) or a state dict in its class."""
    if path.suffix == ".safetensors":
        try:
            tensors = load_safetensors(path)
        except Exception as err:  # safetensors raises its own error types for bad files
            reason = (str(err).splitlines() or [""])[0]
            raise FileProblemError(
                f"Could not read {str(path)!r} as a safetensors file ({type(err).__name__}: "
                f"{reason}). Check that the file is complete and was written by safetensors."
            ) from err
        return _into(architecture, options, tensors, path)
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit is deprecated, but its files are still read
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return scripted
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol before refusing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            content = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler names the first class it refused to import.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        refused = found.group(1) if found else _first_pickled_global(path)
        if refused is None:  # not a pickle at all
            raise FileProblemError(
                f"Could not read {str(path)!r} as a PyTorch file (it is no valid pickle). "
                f"Give {_SPEC_FORMS}."
            ) from err
        raise FileProblemError(
            f"Refusing to load {str(path)!r}: it is a pickled checkpoint holding Python objects "
            f"({refused}, ...), such as a whole nn.Module, and unpickling it can run "
            "arbitrary code. If you trust its source, pass trust_pickle=True (command line: "
            "--trust-pickle). Safer: save model.state_dict() and load it with "
            "architecture='package.module:ClassName'."
        ) from err
    except (RuntimeError, OSError, EOFError) as err:
        raise FileProblemError(
            f"Could not read {str(path)!r} as a PyTorch file ({type(err).__name__}: {err}). "
            f"Give {_SPEC_FORMS}."
        ) from err
    if isinstance(content, nn.Module):
        if architecture is not None:
            raise InvalidParameterError(
                f"{str(path)!r} holds a whole model, so the 'architecture' parameter of "
                f"load_model must be None. Got {architecture!r} instead."
            )
        return content
    return _into(architecture, options, _state_dict(content, path), path)


def _first_pickled_global(path: Path) -> str | None:
    """The first class or function a plain pickle file imports, read without unpickling;
    ``None`` when the file is no pickle (or imports nothing)."""
    try:
        with path.open("rb") as handle:
            strings: list[str] = []
            for opcode, argument, _ in pickletools.genops(handle):
                if opcode.name == "GLOBAL":
                    return str(argument).replace(" ", ".")
                if isinstance(argument, str):
                    strings.append(argument)
                if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    return f"{strings[-2]}.{strings[-1]}"
    except Exception:  # any failure to parse means: not a pickle
        return None
    return None


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a ``torch.jit.save`` archive: a zip with ``code/`` and constants."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _state_dict(content: object, path: Path) -> Mapping[str, Tensor]:
    """The tensors of a loaded checkpoint, unwrapping one level of ``{"state_dict": ...}``."""
    if isinstance(content, Mapping):
        for key in _NESTED_KEYS:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in content.items()
    ):
        raise ModelError(
            f"{str(path)!r} holds neither a model nor a state dict (a mapping of names to "
            f"tensors, possibly under one of {', '.join(map(repr, _NESTED_KEYS))}). Save it with "
            "torch.save(model.state_dict(), path) or torch.jit.save(torch.jit.script(model), path)."
        )
    return content


def _into(
    architecture: str | None,
    options: Mapping[str, Any] | None,
    state: Mapping[str, Tensor],
    path: Path,
) -> nn.Module:
    """Build ``architecture(**options)`` and load ``state`` into it, strictly."""
    if architecture is None:
        raise InvalidParameterError(
            f"{str(path)!r} is a state dict (weights without the model's code), so the "
            "'architecture' parameter of load_model must be an import path "
            "'package.module:ClassName' of its model class. Got None instead."
        )
    module = _build(architecture, options)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(
            f"The state dict in {str(path)!r} does not fit {architecture}: {err}. Check the "
            "architecture and its options."
        ) from err
    return module


def _build(architecture: str, options: Mapping[str, Any] | None) -> nn.Module:
    """Import ``"package.module:Name"`` and call it with ``options``."""
    module_name, _, qualname = architecture.partition(":")
    if not module_name or not qualname:
        raise InvalidParameterError(
            "The 'architecture' parameter of load_model must be an import path "
            f"'package.module:ClassName'. Got {architecture!r} instead."
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise MissingDependencyError(
            f"Could not import {module_name!r} for architecture {architecture!r} "
            f"({type(err).__name__}: {err}). Install its package or add its folder to PYTHONPATH."
        ) from err
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise InvalidParameterError(
                f"The module {module_name!r} has no {qualname!r} (from architecture "
                f"{architecture!r}). Check the name after the colon."
            )
        target = getattr(target, part)
    try:
        module = target(**dict(options or {}))
    except Exception as err:
        raise ModelError(
            f"Building {architecture}(**{dict(options or {})!r}) raised {type(err).__name__}: "
            f"{err}. Check the 'options' parameter of load_model."
        ) from err
    if not isinstance(module, nn.Module):
        raise ModelError(
            f"{architecture} returned {type(module).__name__}, not an nn.Module. Name a model "
            "class or a function that returns one."
        )
    return module
