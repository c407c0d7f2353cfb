"""Built-in models: small architectures trained by faithmap on its synthetic shapes.

The weights ship inside the package, in ``faithmap/zoo/weights/<name>.safetensors``, and are
made by ``python -m faithmap.zoo.train`` (see :mod:`faithmap.zoo.train`); the detector's by
``python -m faithmap.zoo.train_detector``. The models people
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
from faithmap.zoo.detector import ShapesDetector
from faithmap.zoo.vit import SmallViT

__all__ = [
    "BUILTIN_MODELS",
    "DETECTOR_MODELS",
    "ROBUST_MODELS",
    "ZOO_MODELS",
    "ShapesDetector",
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
    "detector": lambda: ShapesDetector(num_classes=len(CLASS_NAMES)),
}

BUILTIN_MODELS: Final[tuple[str, ...]] = ("cnn", "resnet", "vit")
"""The built-in classifiers: the benchmark's default models."""

ROBUST_MODELS: Final[tuple[str, ...]] = ("cnn_robust", "resnet_robust")
"""Adversarially trained versions of built-in models (:mod:`faithmap.zoo.adversarial`)."""

DETECTOR_MODELS: Final[tuple[str, ...]] = ("detector",)
"""The built-in object detector (:class:`ShapesDetector`, :mod:`faithmap.zoo.detector`)."""

ZOO_MODELS: Final[tuple[str, ...]] = BUILTIN_MODELS + ROBUST_MODELS + DETECTOR_MODELS
"""Every name :func:`load_builtin` accepts."""


def architecture(name: str) -> nn.Module:
    """Build an untrained built-in architecture, with one output per shape class.

    Parameters
    ----------
    name : str
        ``"cnn"`` (:class:`SmallCNN`), ``"resnet"`` (:class:`SmallResNet`), ``"vit"``
        (:class:`SmallViT`) or ``"detector"`` (:class:`ShapesDetector`).

    Returns
    -------
    nn.Module
        A freshly initialised model, in training mode.

    Raises
    ------
    InvalidParameterError
        If `name` is not in :data:`BUILTIN_MODELS` or :data:`DETECTOR_MODELS`.
    """
    if not isinstance(name, str) or name not in _ARCHITECTURES:
        raise InvalidParameterError(
            f"The 'name' parameter must be one of {', '.join(map(repr, _ARCHITECTURES))}. "
            f"Got {name!r} instead."
        )
    return _ARCHITECTURES[name]()


def load_builtin(name: str) -> nn.Module:
    """Load a built-in model with its shipped weights, in eval mode, on the CPU.

    The classifiers classify :func:`faithmap.data.make_shapes` images (``(N, 3, H, W)`` in
    ``[0, 1]``, trained at 64 x 64) into :data:`faithmap.data.CLASS_NAMES`. The detector finds
    those shapes in :func:`faithmap.data.make_shapes_scenes` images (trained at 96 x 96) and
    returns ``(N, 4 + 6, A)``: per stride-8 cell a box ``cx, cy, w, h`` in pixels and six class
    scores in ``[0, 1]`` (:class:`ShapesDetector`; ``.detect`` gives boxes after NMS).

    Parameters
    ----------
    name : str
        ``"cnn"``, ``"resnet"`` or ``"vit"``, or ``"cnn_robust"``, ``"resnet_robust"`` for the
        adversarially trained versions (same architecture, weights from
        ``python -m faithmap.zoo.adversarial``), or ``"detector"``.

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
        if name in DETECTOR_MODELS:
            script = "train_detector"
        else:
            script = f"{'adversarial' if name in ROBUST_MODELS else 'train'} --arch {base}"
        raise FileProblemError(
            f"The weights of the built-in model {name!r} are missing ({weights}). Make them with "
            f"`python -m faithmap.zoo.{script} --out src/faithmap/zoo/weights/{name}.safetensors`."
        )
    model.load_state_dict(load_safetensors(weights.read_bytes()))
    return model.eval()
