"""What a benchmark runs on: the user's models and data as well as the built-in ones.

A :class:`ModelSource` is a built-in name, a model file or library spec that
:func:`faithmap.zoo.loaders.load_model` reads (with what the model expects and returns), or a
model given in Python. A :class:`DataSource` is the built-in ``shapes`` data, a folder of
images (labels from sub-folders, optional ground-truth masks from a folder of files with the
same names), or tensors given in Python. Both know their *identity*, the part of a benchmark's
configuration hash that decides the numbers: a file's identity includes its content hash, so a
retrained model or an edited folder is a new run, never mixed with an old one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from faithmap.core.model import Model
from faithmap.core.preprocessing import Preprocessing, as_preprocessing, parse_size
from faithmap.core.readout import Outputs
from faithmap.data import make_shapes, make_shapes_scenes
from faithmap.data.files import IMAGE_SUFFIXES, read_image
from faithmap.errors import InvalidParameterError
from faithmap.zoo import ZOO_MODELS

LIBRARY_PREFIXES = ("torchvision:", "timm:", "hf:")
BUILTIN_DATA = "shapes"
BUILTIN_SCENES = "scenes"
"""Detection data: :func:`~faithmap.data.make_shapes_scenes`, each image's first object the
one explained (its box, label and mask)."""


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _module_hash(module: object) -> str:
    """A hash of a module's class, parameter names, shapes and values (its weights)."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    if isinstance(module, nn.Module):
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    else:
        digest.update(repr(module).encode())
    return digest.hexdigest()[:16]


def _safe_name(text: str) -> str:
    """A model name usable in task ids and file names (no slashes)."""
    return re.sub(r"[^A-Za-z0-9_.:+-]", "_", text) or "model"


@dataclass(frozen=True)
class ModelSource:
    """A model of a benchmark: where it comes from and what was declared about it.

    Parameters
    ----------
    name : str
        The name shown in the results and the report.
    spec : str or None
        What :func:`faithmap.zoo.loaders.load_model` reads: a built-in name, a file, a
        ``torchvision:``/``timm:``/``hf:`` name. ``None`` for a model given in Python.
    architecture, trust_pickle
        As for :func:`~faithmap.zoo.loaders.load_model` (a state dict's class; pickles).
    outputs : {"logits", "probabilities", "log_probabilities"}
        What the model returns.
    preprocessing : Preprocessing or None
        What the model expects, applied inside each call.
    model : Model or None
        The model itself, when given in Python.
    """

    name: str
    spec: str | None = None
    architecture: str | None = None
    trust_pickle: bool = False
    outputs: Outputs = "logits"
    preprocessing: Preprocessing | None = None
    model: Model | None = field(default=None, compare=False, repr=False)
    fingerprint: str = ""

    @property
    def is_builtin(self) -> bool:
        """A built-in model with nothing declared: its identity is its name."""
        return (
            self.spec in ZOO_MODELS
            and self.outputs == "logits"
            and self.preprocessing is None
            and self.model is None
        )

    def load(self, batch_size: int | None) -> Model:
        """The model, loaded (a model given in Python is returned as it is)."""
        if self.model is not None:
            return self.model
        from faithmap.zoo.loaders import load_model

        assert self.spec is not None  # a source without a model always has a spec
        return load_model(
            self.spec,
            architecture=self.architecture,
            trust_pickle=self.trust_pickle,
            batch_size=batch_size,
            outputs=self.outputs,
            preprocessing=self.preprocessing,
        )

    def identity(self) -> str | dict[str, Any]:
        """What decides the numbers: the name of a built-in, else the spec, content hash and
        everything declared."""
        if self.is_builtin:
            return self.name
        return {
            "name": self.name,
            "spec": self.spec,
            "fingerprint": self.fingerprint,
            "architecture": self.architecture,
            "outputs": self.outputs,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.record(),
        }


def model_source(value: object, **declared: Any) -> ModelSource:
    """A :class:`ModelSource` from a name, a spec, a mapping of its fields, or a model.

    ``declared`` (``outputs``, ``preprocessing``, ``architecture``, ``trust_pickle``) applies to
    a model file or library spec; a built-in name ignores it (the built-ins declare their own).
    """
    if isinstance(value, ModelSource):
        return value
    if isinstance(value, Mapping):
        fields = dict(value)
        spec = fields.pop("spec", None)
        if not isinstance(spec, str):
            raise InvalidParameterError(
                f"A model table needs spec = '<name or file>'. Got {dict(value)!r} instead."
            )
        preprocessing = {
            key: fields.pop(key)
            for key in list(fields)
            if key in Preprocessing.__dataclass_fields__
        }
        if preprocessing:
            fields["preprocessing"] = Preprocessing(**preprocessing)
        unknown = sorted(
            set(fields) - {"name", "architecture", "trust_pickle", "outputs", "preprocessing"}
        )
        if unknown:
            raise InvalidParameterError(
                f"Unknown key(s) {unknown} in the model table for {spec!r}. Valid keys are: "
                "spec, name, architecture, trust_pickle, outputs and the preprocessing fields "
                f"({', '.join(Preprocessing.__dataclass_fields__)})."
            )
        name = fields.pop("name", None)
        source = model_source(spec, **fields)
        return source if name is None else _renamed(source, str(name))
    if isinstance(value, Model | nn.Module) or (callable(value) and not isinstance(value, str)):
        model = Model.wrap(value)
        return ModelSource(
            name=_safe_name(type(model.module).__name__),
            model=model,
            outputs=model.outputs_kind,
            fingerprint=_module_hash(model.module),
            preprocessing=None if model.preprocessing == Preprocessing() else model.preprocessing,
        )
    if not isinstance(value, str) or not value:
        raise InvalidParameterError(
            "A benchmark model must be a built-in name, a model file, a torchvision:/timm:/hf: "
            f"name, a mapping with a 'spec', or a faithmap.Model. Got {value!r} instead."
        )
    if value in ZOO_MODELS:
        return ModelSource(name=value, spec=value)
    declared_preprocessing = declared.get("preprocessing")
    options: dict[str, Any] = {
        "architecture": declared.get("architecture"),
        "trust_pickle": bool(declared.get("trust_pickle", False)),
        "outputs": declared.get("outputs", "logits"),
        "preprocessing": None
        if declared_preprocessing is None
        else as_preprocessing(declared_preprocessing),
    }
    if value.startswith(LIBRARY_PREFIXES):
        return ModelSource(name=_safe_name(value), spec=value, **options)
    path = Path(value)
    if path.is_file():
        return ModelSource(
            name=_safe_name(path.stem), spec=value, fingerprint=_file_hash(path), **options
        )
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(
            name=_safe_name(path.name),
            spec=value,
            fingerprint=_file_hash(path / "config.json"),
            **options,
        )
    raise InvalidParameterError(
        f"Unknown model {value!r} in the benchmark configuration: not a built-in name and no "
        f"such file. Valid names are: {', '.join(ZOO_MODELS)}; or give a model file (.pt, "
        ".safetensors with --architecture, .onnx), a Hugging Face directory, or "
        "torchvision:NAME, timm:NAME, hf:NAME."
    )


def _renamed(source: ModelSource, name: str) -> ModelSource:
    return replace(source, name=_safe_name(name))


@dataclass(frozen=True)
class ImageData:
    """The images of a benchmark ``(N, C, H, W)`` in [0, 1], ground-truth masks
    ``(N, 1, H, W)`` (``None`` without any), labels ``(N,)`` (``None`` without any), a name
    per image, and for detection data each image's object box ``(N, 4)`` (x0, y0, x1, y1 in
    pixels; its class is the label), which the methods and metrics explain."""

    images: Tensor
    masks: Tensor | None
    labels: Tensor | None
    names: tuple[str, ...]
    boxes: Tensor | None = None


@dataclass(frozen=True)
class DataSource:
    """The data of a benchmark.

    Parameters
    ----------
    name : str
        The name shown in the report; for the built-in data, which: ``"shapes"`` or
        ``"scenes"`` (:data:`BUILTIN_SCENES`).
    path : str or None
        A folder of images (``None`` for the built-in data or tensors). Images directly in it,
        or in one sub-folder per class (the sub-folder names, sorted, are the labels).
    masks : str or None
        A folder of ground-truth masks, one image file per input image with the same file
        name stem (any image format; non-zero pixels are the object).
    size : (int, int) or None
        The size images are brought to (by ``keep_aspect`` letterboxing or stretching);
        ``None`` keeps the files' size, which must then be the same for all.
    keep_aspect : bool
        Letterbox instead of stretching.
    images, mask_tensors, label_tensors : Tensor or None
        Data given in Python.
    """

    name: str = BUILTIN_DATA
    path: str | None = None
    masks: str | None = None
    size: tuple[int, int] | None = None
    keep_aspect: bool = False
    images: Tensor | None = field(default=None, compare=False, repr=False)
    mask_tensors: Tensor | None = field(default=None, compare=False, repr=False)
    label_tensors: Tensor | None = field(default=None, compare=False, repr=False)
    fingerprint: str = ""

    @property
    def is_builtin(self) -> bool:
        return self.path is None and self.images is None

    def files(self) -> list[tuple[Path, int | None]]:
        """The image files of the folder, sorted, each with its label (sub-folder) or ``None``."""
        assert self.path is not None
        root = Path(self.path)
        direct = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        classes = sorted(p for p in root.iterdir() if p.is_dir())
        found: list[tuple[Path, int | None]] = [(p, None) for p in direct]
        if not direct:
            for label, folder in enumerate(classes):
                found += [
                    (p, label)
                    for p in sorted(folder.iterdir())
                    if p.suffix.lower() in IMAGE_SUFFIXES
                ]
        return found

    def count(self) -> int | None:
        """How many samples the data holds (``None``: the built-in data, any number)."""
        if self.images is not None:
            return int(self.images.shape[0])
        if self.path is not None:
            return len(self.files())
        return None

    def load(self, n_samples: int, data_seed: int) -> ImageData:
        """The first ``n_samples`` samples (the built-in data: ``n_samples`` drawn by seed)."""
        if self.images is not None:
            masks = self.mask_tensors
            labels = self.label_tensors
            return ImageData(
                self.images[:n_samples],
                None if masks is None else masks[:n_samples],
                None if labels is None else labels[:n_samples],
                tuple(str(i) for i in range(min(n_samples, self.images.shape[0]))),
            )
        if self.path is None and self.name == BUILTIN_SCENES:
            scenes = make_shapes_scenes(n_samples, seed=data_seed)
            return ImageData(
                scenes.images,
                torch.stack([masks[:1] for masks in scenes.masks]),
                torch.stack([labels[0] for labels in scenes.labels]),
                tuple(map(str, range(n_samples))),
                boxes=torch.stack([boxes[0] for boxes in scenes.boxes]),
            )
        if self.path is None:
            shapes = make_shapes(n_samples, seed=data_seed)
            return ImageData(
                shapes.images, shapes.masks, shapes.labels, tuple(map(str, range(n_samples)))
            )
        policy = Preprocessing(size=self.size, keep_aspect=self.keep_aspect)
        files = self.files()[:n_samples]
        images = [read_image(path, policy) for path, _ in files]
        sizes = {tuple(image.shape[-2:]) for image in images}
        if len(sizes) > 1:
            raise InvalidParameterError(
                f"The images of {self.path!r} have different sizes; give the data a size "
                "(--size HxW, or size in the data table) so they are resized to it."
            )
        classes = [label for _, label in files]
        return ImageData(
            torch.cat(images),
            None if self.masks is None else self._read_masks([p for p, _ in files], policy),
            None if None in classes else torch.tensor(classes),
            tuple(path.stem for path, _ in files),
        )

    def _read_masks(self, files: list[Path], policy: Preprocessing) -> Tensor:
        assert self.masks is not None
        folder = Path(self.masks)
        by_stem = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        missing = [p.name for p in files if p.stem not in by_stem]
        if missing:
            raise InvalidParameterError(
                f"The mask folder {self.masks!r} has no mask for {', '.join(missing[:5])}"
                f"{' ...' if len(missing) > 5 else ''}. Give one mask image per input image, "
                "with the same file name stem."
            )
        masks = [read_image(by_stem[p.stem], policy).amax(1, keepdim=True) > 0.5 for p in files]
        return torch.cat(masks)

    def identity(self) -> str | dict[str, Any]:
        """What decides the numbers: ``"shapes"`` for the built-in data, else where the data
        come from, its content hash and size policy."""
        if self.is_builtin:
            return self.name
        return {
            "name": self.name,
            "path": self.path,
            "masks": self.masks,
            "size": list(self.size) if self.size else None,
            "keep_aspect": self.keep_aspect,
            "fingerprint": self.fingerprint,
        }


def data_source(value: object, **options: Any) -> DataSource:
    """A :class:`DataSource` from ``"shapes"``, a folder path, a mapping of its fields, or
    tensors: ``images`` or ``(images, masks)``; ``options`` are ``masks``, ``size``,
    ``keep_aspect`` for a folder."""
    if isinstance(value, DataSource):
        return value
    if isinstance(value, Mapping):
        table = dict(value)
        path = table.pop("path", None)
        unknown = sorted(set(table) - {"masks", "size", "keep_aspect", "name"})
        if unknown or not isinstance(path, str):
            raise InvalidParameterError(
                f"A data table needs path = '<folder>' and may set masks, size, keep_aspect, "
                f"name. Got {dict(value)!r} instead."
            )
        return data_source(path, **table)
    if isinstance(value, Tensor) or (
        isinstance(value, tuple) and value and isinstance(value[0], Tensor)
    ):
        images, masks = (value, None) if isinstance(value, Tensor) else (value[0], value[1])
        if images.dim() != 4:
            raise InvalidParameterError(
                f"Benchmark images must be a (N, C, H, W) tensor. Got {tuple(images.shape)}."
            )
        digest = hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes())
        if masks is not None:
            digest.update(masks.detach().cpu().contiguous().numpy().tobytes())
        return DataSource(
            name=str(options.get("name", "tensors")),
            images=images.detach().cpu(),
            mask_tensors=None if masks is None else masks.detach().cpu().bool(),
            fingerprint=digest.hexdigest()[:16],
        )
    if value == BUILTIN_DATA or value is None:
        return DataSource()
    if value == BUILTIN_SCENES:
        return DataSource(name=BUILTIN_SCENES)
    if not isinstance(value, str | Path):
        raise InvalidParameterError(
            f"Benchmark data must be {BUILTIN_DATA!r}, {BUILTIN_SCENES!r}, a folder of images or "
            f"tensors. Got {value!r}."
        )
    folder = Path(value)
    if not folder.is_dir():
        raise InvalidParameterError(
            f"Unknown data {str(value)!r}: not a built-in data set and no such folder. Valid "
            f"names are: {BUILTIN_DATA}, {BUILTIN_SCENES}; or give a folder of images (labels "
            "from sub-folders)."
        )
    masks = options.get("masks")
    if masks is not None and not Path(masks).is_dir():
        raise InvalidParameterError(f"The mask folder {str(masks)!r} does not exist.")
    size = options.get("size")
    source = DataSource(
        name=str(options.get("name") or folder.name),
        path=str(folder),
        masks=None if masks is None else str(masks),
        size=None if size is None else parse_size(size, "the benchmark data"),
        keep_aspect=bool(options.get("keep_aspect", False)),
    )
    files = source.files()
    if not files:
        raise InvalidParameterError(
            f"The folder {str(folder)!r} holds no image ({', '.join(IMAGE_SUFFIXES)}), directly "
            "or in class sub-folders."
        )
    digest = hashlib.sha256()
    for path, label in files:
        digest.update(f"{path.relative_to(folder)}:{label}:{_file_hash(path)}".encode())
    if masks is not None:
        for path in sorted(Path(masks).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                digest.update(f"{path.name}:{_file_hash(path)}".encode())
    return replace(source, fingerprint=digest.hexdigest()[:16])
