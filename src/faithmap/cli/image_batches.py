"""Explaining images in batches for ``faithmap explain``: a folder chunk by chunk, output names
that never overwrite each other, the raw attribution files and the cost line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from faithmap.cli.common import errors, file_stem, printable, say
from faithmap.core.cost import Cost
from faithmap.core.explanation import Explanation
from faithmap.core.explanation_stream import ExplanationStream
from faithmap.core.preprocessing import Preprocessing
from faithmap.data import folder_images, read_images
from faithmap.errors import InvalidParameterError


def unique_stems(paths: list[Path]) -> list[str]:
    """Safe output names for ``paths``: the file stem, or stem and suffix where two files share
    a stem (``dup.png`` and ``dup.jpg``), so no output overwrites another."""
    stems = [file_stem(path.stem) for path in paths]
    repeated = {stem for stem in stems if stems.count(stem) > 1}
    return [
        file_stem(f"{path.stem}-{path.suffix.lstrip('.')}") if stem in repeated else stem
        for stem, path in zip(stems, paths, strict=True)
    ]


def raw_file(stems: list[str], model_spec: str, method: str, out: Path) -> Path:
    """Where the raw attributions of ``stems`` go: one safetensors file for them all."""
    name = file_stem(Path(model_spec).stem if Path(model_spec).suffix else model_spec)
    label = stems[0] if len(stems) == 1 else "images"
    return out / f"{label}-{name}-{method}.safetensors"


def save_all(explanation: Explanation, stems: list[str], model_spec: str, out: Path) -> None:
    """Save the raw attributions of one batch; print the cost and the file."""
    raw = explanation.save(raw_file(stems, model_spec, explanation.method, out))
    print_cost(explanation.cost)
    say(f"wrote {raw} (raw attributions of {len(stems)} image(s), in this order)")


def explain_folder(
    folder: Path,
    preprocessing: Preprocessing,
    chunk_size: int,
    explain: Callable[[torch.Tensor, list[str], torch.Tensor | None], Explanation],
    model_spec: str,
    out: Path,
) -> None:
    """Explain a folder ``chunk_size`` images at a time, so memory is bounded by the chunk and
    the first lines come at once; unreadable files are reported and skipped."""
    files = folder_images(folder)
    names = dict(zip(files, unique_stems(files), strict=True))
    out.mkdir(parents=True, exist_ok=True)
    stream = ExplanationStream(out)  # holds one chunk's attributions at a time
    stems: list[str] = []
    shape: tuple[int, ...] | None = None
    with (
        stream,
        tqdm(
            total=len(files), unit="image", file=sys.stderr, disable=len(files) <= chunk_size
        ) as bar,
    ):
        for start in range(0, len(files), chunk_size):
            chunk = files[start : start + chunk_size]
            read = read_images(chunk, preprocessing, require=False)
            for bad, why in read.failures.items():
                errors.print(
                    printable(f"skipped {bad}: {why}"),
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            bar.update(len(chunk))
            if not read.paths:
                continue
            if shape is not None and tuple(read.images.shape[1:]) != shape:
                raise InvalidParameterError(
                    f"The images in {str(folder)!r} have different sizes; give the model's input "
                    "size (--size HxW) so they are resized to it."
                )
            shape = tuple(read.images.shape[1:])
            chunk_stems = [names[path] for path in read.paths]
            stream.add(explain(read.images, chunk_stems, None))
            stems += chunk_stems
        if not stems:
            raise InvalidParameterError(f"No readable image in the folder {str(folder)!r}.")
        raw = stream.close(raw_file(stems, model_spec, stream.method, out))
    print_cost(stream.cost)
    say(f"wrote {raw} (raw attributions of {len(stems)} image(s), in this order)")


def print_cost(cost: Cost) -> None:
    """Print the passes and seconds an explanation cost."""
    line = f"cost: {cost.forward} forward + {cost.backward} backward passes, {cost.seconds:.2f} s"
    if cost.calibration_seconds:
        line += f" (+ {cost.calibration_seconds:.2f} s choosing the batch size)"
    say(line)
