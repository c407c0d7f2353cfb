"""Models of the big libraries by name: torchvision, timm and Hugging Face ``transformers``.

Each loader imports its library only when asked (none is a dependency of faithmap) and reads
weights already on disk, never downloading: torchvision's from the torch hub cache, timm's and
``transformers``' from the Hugging Face cache or a ``save_pretrained`` directory. Weight files are
read with ``torch.load(weights_only=True)`` or safetensors.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from faithmap.core.preprocessing import Preprocessing
from faithmap.errors import (
    FileProblemError,
    InvalidParameterError,
    MissingDependencyError,
    ModelError,
)

__all__ = [
    "HuggingFaceDetector",
    "HuggingFaceLogits",
    "load_hugging_face",
    "load_timm",
    "load_torchvision",
]


class HuggingFaceLogits(nn.Module):
    """A Hugging Face ``transformers`` model that returns its ``logits`` tensor.

    ``transformers`` models return a ``ModelOutput``; faithmap needs the ``(B, C)`` scores.

    Parameters
    ----------
    model : nn.Module
        A model with a prediction head, e.g. ``ViTForImageClassification`` (called with
        ``pixel_values``) or ``BertForSequenceClassification`` (called with ``input_ids``).

    Attributes
    ----------
    model : nn.Module
        The wrapped model; its layers are ``model.<name>`` in ``named_modules()``.

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor) -> Tensor:
        """Return ``model(inputs).logits``."""
        logits = getattr(self.model(inputs), "logits", None)
        if not isinstance(logits, Tensor):
            raise ModelError(
                f"The Hugging Face model {type(self.model).__name__} returns no 'logits'. Load a "
                "model with a prediction head (e.g. AutoModelForImageClassification)."
            )
        return logits


class HuggingFaceDetector(nn.Module):
    """A ``transformers`` object detector returning its ``logits`` and ``pred_boxes``.

    The output keeps the model's own output class (``DetrObjectDetectionOutput``, ...), so
    :func:`faithmap.core.detection.infer_adapter` knows how to read it; the hidden states are
    dropped. Detectors of text queries (OWL-ViT, Grounding DINO) need the tokenised queries.

    Parameters
    ----------
    model : nn.Module
        A ``...ForObjectDetection`` model, called with ``pixel_values``.
    text_inputs : mapping of str to Tensor, optional
        For a text-conditioned detector, ``processor(text=..., return_tensors="pt")``'s
        ``input_ids`` (and ``attention_mask``) of one image, repeated for every image of a batch.

    References
    ----------
    Carion et al., "End-to-End Object Detection with Transformers", ECCV 2020.
    """

    def __init__(self, model: nn.Module, text_inputs: Mapping[str, Tensor] | None = None) -> None:
        super().__init__()
        self.model = model
        self.text_inputs = dict(text_inputs or {})

    def forward(self, images: Tensor) -> Any:
        """``model(pixel_values=images, **text_inputs)``, its logits and boxes only."""
        wants_text = "input_ids" in inspect.signature(self.model.forward).parameters
        if wants_text and "input_ids" not in self.text_inputs:
            raise ModelError(
                f"{type(self.model).__name__} finds objects named by text queries: wrap it as "
                "HuggingFaceDetector(model, text_inputs=processor(text=[...], "
                "return_tensors='pt')) so every image is searched for them."
            )
        batch = images.shape[0]
        extra = {
            key: value.to(images.device).repeat(batch, *[1] * (value.dim() - 1))
            for key, value in self.text_inputs.items()
        }
        output = self.model(pixel_values=images, **extra)
        return type(output)(logits=output.logits, pred_boxes=output.pred_boxes)


def _import_library(library: str, spec: str, install: str) -> Any:
    """Import ``library``, or say how to install it."""
    try:
        return importlib.import_module(library)
    # torchvision may also fail with OSError or RuntimeError when its compiled ops do not load.
    except (ImportError, OSError, RuntimeError) as err:
        raise MissingDependencyError(
            f"Loading {spec!r} needs {library.partition('.')[0]}, which could not be imported "
            f"({type(err).__name__}: {err}). Install it with `{install}`, or export the model "
            "to TorchScript or ONNX where it works and load that file."
        ) from err


def load_torchvision(name: str) -> nn.Module:
    """A torchvision model with its default weights, read from the torch hub cache.

    Parameters
    ----------
    name : str
        A name of ``torchvision.models.list_models()``, e.g. ``"resnet18"``. Its default weights
        must be in ``$TORCH_HOME/hub/checkpoints`` (where torchvision downloads them).

    Returns
    -------
    nn.Module
        The model with its weights, in training mode.

    Raises
    ------
    MissingDependencyError
        If torchvision cannot be imported.
    FileProblemError
        If the weights file is not on disk.
    InvalidParameterError
        If torchvision has no model `name` with weights.

    References
    ----------
    Marcel and Rodriguez, "Torchvision the machine-vision package of torch", ACM MM 2010.
    """
    spec = f"torchvision:{name}"
    models = _import_library(
        "torchvision.models", spec, "pip install torchvision (the build matching your torch)"
    )
    try:
        weights = models.get_model_weights(name).DEFAULT
    except ValueError as err:
        raise InvalidParameterError(
            f"The 'spec' parameter of load_model names no torchvision model with weights: {err} "
            f"Got {spec!r} instead; see torchvision.models.list_models()."
        ) from err
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not file.is_file():
        raise FileProblemError(
            f"The weights of {spec!r} are not on disk: expected {file}. Download {weights.url} "
            "where you have internet and put the file there (the folder follows $TORCH_HOME)."
        )
    module: nn.Module = models.get_model(name, weights=None)
    return _load_weights(module, file, spec)


def load_timm(name: str) -> nn.Module:
    """A timm model with its pretrained weights, read from the Hugging Face cache.

    Parameters
    ----------
    name : str
        A name of ``timm.list_models()``, e.g. ``"resnet18.a1_in1k"``; its weights must be in the
        Hugging Face cache, where ``timm.create_model(name, pretrained=True)`` puts them.

    Returns
    -------
    nn.Module
        The model with its weights, in training mode.

    Raises
    ------
    MissingDependencyError
        If timm cannot be imported.
    FileProblemError
        If the weights are not in the cache.
    InvalidParameterError
        If timm has no model `name`.

    References
    ----------
    Wightman, "PyTorch Image Models", GitHub repository, 2019.
    """
    spec = f"timm:{name}"
    timm = _import_library("timm", spec, "pip install timm")
    if not timm.is_model(name):
        raise InvalidParameterError(
            f"The 'spec' parameter of load_model names no timm model. Got {spec!r} instead; "
            "see timm.list_models()."
        )
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(config, "hf_hub_id", None)
    file: Path | None = None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(hub_id, filename) if hub_id else None
        if isinstance(cached, str):
            file = Path(cached)
            break
    if file is None:
        raise FileProblemError(
            f"The weights of {spec!r} are not in the Hugging Face cache (Hugging Face Hub "
            f"repository {hub_id!r}). Where you have internet run "
            f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` and copy "
            "the cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) here; or save the model's "
            "state dict and load it with architecture='timm.models:NAME'."
        )
    module: nn.Module = timm.create_model(name, pretrained=False)
    return _load_weights(module, file, spec)


def _load_weights(module: nn.Module, file: Path, spec: str) -> nn.Module:
    """Load a state-dict file safely into ``module``."""
    if file.suffix == ".safetensors":
        state: dict[str, Tensor] = load_safetensors(file)
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise ModelError(f"The weights in {file} do not fit {spec!r}: {err}") from err
    return module


def load_hugging_face(name: str) -> nn.Module:
    """A ``transformers`` model with a head, from a local directory or the cache only.

    The class is the first entry of the config's ``architectures`` (written by
    ``save_pretrained``); remote code is never run.

    Parameters
    ----------
    name : str
        A ``save_pretrained`` directory, or a Hub name whose files are in the Hugging Face cache.

    Returns
    -------
    HuggingFaceLogits or HuggingFaceDetector
        The model, returning its logits (an object detector: its logits and boxes).

    Raises
    ------
    MissingDependencyError
        If ``transformers`` cannot be imported.
    FileProblemError
        If the model is not on disk.
    ModelError
        If the config names no model class ``transformers`` knows.

    References
    ----------
    Wolf et al., "Transformers: State-of-the-Art Natural Language Processing", EMNLP 2020.
    """
    transformers = _import_library("transformers", f"hf:{name}", "pip install 'faithmap[text]'")
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileProblemError(
            f"No Hugging Face model {name!r} on disk ({type(err).__name__}: {err}). Give the "
            "directory written by model.save_pretrained(...), or the name of a Hub model in the "
            "Hugging Face cache: where you have internet, run `huggingface-cli download NAME` "
            "and copy the cache (~/.cache/huggingface/hub, or $HF_HUB_CACHE) here."
        ) from err
    classes = list(getattr(config, "architectures", None) or [])
    model_class = getattr(transformers, classes[0], None) if classes else None
    if model_class is None:
        raise ModelError(
            f"The config of {name!r} names no model class transformers knows (architectures: "
            f"{classes}). Save the model with save_pretrained from a model with a head."
        )
    model: nn.Module = model_class.from_pretrained(name, local_files_only=True)
    if classes[0].endswith("ForObjectDetection"):
        return HuggingFaceDetector(model)
    return HuggingFaceLogits(model)


def hugging_face_preprocessing(name: str) -> Preprocessing | None:
    """What a Hugging Face image model expects, from its ``preprocessor_config.json``.

    The image processor's normalisation (``image_mean``, ``image_std`` when ``do_normalize``)
    and an exact ``{"height", "width"}`` size become a :class:`Preprocessing` on [0, 1]
    inputs (the processor's ``rescale_factor`` 1/255 is faithmap's pixel space already). A
    ``shortest_edge`` resize with a centre crop is not reproduced: give ``size`` yourself.
    ``None`` when the model has no such file on disk (a text model, or none saved).
    """
    directory = Path(name)
    if directory.is_dir():
        file = directory / "preprocessor_config.json"
        found = file if file.is_file() else None
    else:
        try:
            from transformers.utils.hub import cached_file

            located = cached_file(
                name,
                "preprocessor_config.json",
                local_files_only=True,
                _raise_exceptions_for_missing_entries=False,
            )
        except (ImportError, OSError, ValueError):
            located = None
        found = Path(located) if located else None
    if found is None:
        return None
    try:
        config = json.loads(found.read_text())
    except (OSError, ValueError):
        return None
    size = config.get("size") if config.get("do_resize", True) else None
    exact = (size["height"], size["width"]) if isinstance(size, dict) and "height" in size else None
    normalise = config.get("do_normalize", False) and "image_mean" in config
    return Preprocessing(
        size=exact,
        mean=tuple(config["image_mean"]) if normalise else None,
        std=tuple(config["image_std"]) if normalise else None,
    )
