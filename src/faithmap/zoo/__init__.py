"""Built-in models: small architectures trained by faithmap on its synthetic shapes.

The weights ship inside the package, in ``faithmap/zoo/weights/<name>.safetensors``, and are
made by ``python -m faithmap.zoo.train`` (see :mod:`faithmap.zoo.train`). The models people
bring (TorchScript, state dicts, ONNX, torchvision, timm and Hugging Face models) are loaded by
:func:`faithmap.zoo.loaders.load_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Final

from safetensors.torch import load as load_safetensors
from torch import nn

from faithmap.data.synthetic import CLASS_NAMES
from faithmap.errors import FileProblemError, InvalidParameterError
from faithmap.zoo.architectures import SmallCNN, SmallResNet
from faithmap.zoo.vit import SmallViT

__all__ = [
    "BUILTIN_MODELS",
    "ROBUST_MODELS",
    "ZOO_MODELS",
    "SmallCNN",
    "SmallResNet",
    "SmallViT",
    "architecture",
    "load_builtin",
]

_ARCHITECTURES: Final[dict[str, Callable[[], nn.Module]]] = {
    "cnn": lambda: SmallCNN(num_classes=len(CLASS_NAMES)),
    "resnet": lambda: SmallResNet(num_classes=len(CLASS_NAMES)),
    "vit": lambda: SmallViT(num_classes=len(CLASS_NAMES)),
}

BUILTIN_MODELS: Final[tuple[str, ...]] = tuple(_ARCHITECTURES)
"""The built-in models: names accepted by :func:`architecture`, and the benchmark's default."""

ROBUST_MODELS: Final[tuple[str, ...]] = ("cnn_robust", "resnet_robust")
"""Adversarially trained versions of built-in models (:mod:`faithmap.zoo.adversarial`)."""

ZOO_MODELS: Final[tuple[str, ...]] = BUILTIN_MODELS + ROBUST_MODELS
"""Every name :func:`load_builtin` accepts."""


def architecture(name: str) -> nn.Module:
    """Build an untrained built-in architecture, with one output per shape class.

    Parameters
    ----------
    name : str
        ``"cnn"`` (:class:`SmallCNN`), ``"resnet"`` (:class:`SmallResNet`) or ``"vit"``
        (:class:`SmallViT`).

    Returns
    -------
    nn.Module
        A freshly initialised model, in training mode.

    Raises
    ------
    InvalidParameterError
        If `name` is not in :data:`BUILTIN_MODELS`.
    """
    if not isinstance(name, str) or name not in _ARCHITECTURES:
        raise InvalidParameterError(
            f"The 'name' parameter must be one of {', '.join(map(repr, BUILTIN_MODELS))}. "
            f"Got {name!r} instead."
        )
    return _ARCHITECTURES[name]()


def load_builtin(name: str) -> nn.Module:
    """Load a built-in model with its shipped weights, in eval mode, on the CPU.

    The models classify :func:`faithmap.data.make_shapes` images (``(N, 3, H, W)`` in
    ``[0, 1]``, trained at 64 x 64) into :data:`faithmap.data.CLASS_NAMES`.

    Parameters
    ----------
    name : str
        ``"cnn"``, ``"resnet"`` or ``"vit"``, or ``"cnn_robust"``, ``"resnet_robust"`` for the
        adversarially trained versions (same architecture, weights from
        ``python -m faithmap.zoo.adversarial``).

    Returns
    -------
    nn.Module
        The trained model in eval mode.

    Raises
    ------
    InvalidParameterError
        If `name` is not in :data:`ZOO_MODELS`.
    FileProblemError
        If the weights file is missing from the installation.

    Examples
    --------
    >>> from faithmap.data import make_shapes
    >>> model = load_builtin("cnn")
    >>> model(make_shapes(4, seed=1).images).shape
    torch.Size([4, 6])
    """
    if not isinstance(name, str) or name not in ZOO_MODELS:
        raise InvalidParameterError(
            f"The 'name' parameter must be one of {', '.join(map(repr, ZOO_MODELS))}. "
            f"Got {name!r} instead."
        )
    base = name.removesuffix("_robust")
    model = architecture(base)
    weights = files("faithmap.zoo").joinpath("weights", f"{name}.safetensors")
    if not weights.is_file():
        script = "adversarial" if name in ROBUST_MODELS else "train"
        raise FileProblemError(
            f"The weights of the built-in model {name!r} are missing ({weights}). Make them with "
            f"`python -m faithmap.zoo.{script} --arch {base} "
            f"--out src/faithmap/zoo/weights/{name}.safetensors`."
        )
    model.load_state_dict(load_safetensors(weights.read_bytes()))
    return model.eval()
