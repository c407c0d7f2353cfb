"""The ``faithmap`` command: list methods, explain an image, run the benchmark.

Errors faithmap raises on bad input are printed as one red line, ``error: <message>``, and
the command exits with status 2, without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from faithmap.api import get_method
from faithmap.bench import DEFAULT_METHOD_PARAMS, BenchConfig, run_bench, summarize
from faithmap.data import CLASS_NAMES, make_shapes
from faithmap.errors import FaithmapError, InvalidParameterError
from faithmap.metrics import deletion, insertion
from faithmap.model import Model
from faithmap.registry import available, describe
from faithmap.validation import check_int
from faithmap.viz import save_overlay
from faithmap.zoo import BUILTIN_MODELS, load_builtin

__all__ = ["app", "main", "parse_param", "read_image"]

IMAGE_SIZE = 64
"""Side, in pixels, that images are resized to for the built-in models."""

app = typer.Typer(
    name="faithmap",
    help="Explain what drove a model's prediction, and measure how faithful the explanation is.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn a :class:`FaithmapError` into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except FaithmapError as err:
        errors.print(Text(f"error: {err}", style="bold red"), soft_wrap=True)
        raise typer.Exit(code=2) from err


def parse_param(text: str) -> tuple[str, Any]:
    """``"key=value"`` as ``(key, value)``, the value parsed as an int, float, bool or string.

    Examples
    --------
    >>> parse_param("steps=16"), parse_param("fill=blur"), parse_param("absolute=false")
    (('steps', 16), ('fill', 'blur'), ('absolute', False))
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidParameterError(
            f"A --param must look like key=value (for example steps=16). Got {text!r} instead."
        )
    value: Any = raw.strip()
    if value.lower() in ("true", "false"):
        return key.strip(), value.lower() == "true"
    for kind in (int, float):
        try:
            return key.strip(), kind(value)
        except ValueError:
            continue
    return key.strip(), value


def read_image(path: Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """An image file as a ``(1, 3, size, size)`` float tensor in [0, 1].

    Alpha is dropped, grey images are repeated over three channels, and the image is resized
    with anti-aliasing.
    """
    from skimage.io import imread
    from skimage.transform import resize

    if not path.is_file():
        raise InvalidParameterError(f"The image file {str(path)!r} does not exist.")
    try:
        pixels = np.asarray(imread(path))
    except (OSError, ValueError) as err:
        raise InvalidParameterError(
            f"Could not read {str(path)!r} as an image ({err}). Give a PNG or JPEG file."
        ) from err
    scale = np.iinfo(pixels.dtype).max if np.issubdtype(pixels.dtype, np.integer) else 1
    array = pixels.astype(np.float64) / scale
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidParameterError(
            f"The image {str(path)!r} has shape {array.shape}; expected a grey, RGB or RGBA image."
        )
    array = array[..., :1] if array.shape[2] == 2 else array[..., :3]  # drop alpha
    array = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
    array = resize(array, (size, size), anti_aliasing=True)  # type: ignore[no-untyped-call]
    tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float()
    return tensor.clamp(0.0, 1.0).unsqueeze(0)


def _split(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidParameterError(f"--{what} needs at least one name. Got {text!r}.")
    return names


@app.command()
def methods() -> None:
    """List the registered attribution methods."""
    with _clean_errors():
        names = available()
        width = max(map(len, names))
        for name in names:
            console.print(f"{name:<{width}}  {describe(name)}", highlight=False, soft_wrap=True)


@app.command(name="explain")
def explain_image(
    image: Annotated[
        Path | None,
        typer.Argument(help="A PNG or JPEG image; a built-in sample when left out."),
    ] = None,
    method: Annotated[str, typer.Option(help="A name from `faithmap methods`.")] = (
        "integrated_gradients"
    ),
    model: Annotated[str, typer.Option(help=f"One of {', '.join(BUILTIN_MODELS)}.")] = "cnn",
    target: Annotated[
        int | None, typer.Option("--target", "-t", help="Class to explain; default: predicted.")
    ] = None,
    sample: Annotated[
        int, typer.Option(help="Which built-in sample (its seed) when no IMAGE is given.")
    ] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A method parameter key=value (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the overlay and attributions.")] = Path(
        "faithmap-out"
    ),
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per model call; default: the fastest, measured.")
    ] = None,
) -> None:
    """Explain one image: save a heatmap overlay and the raw attributions, print the AUCs."""
    with _clean_errors():
        configured = get_method(method, **dict(parse_param(p) for p in param or []))
        mask = None
        if image is None:
            shapes = make_shapes(1, seed=sample)
            x, mask, stem = shapes.images, shapes.masks[0], f"sample{sample}"
            label = f" (true class: {CLASS_NAMES[int(shapes.labels[0])]})"
        else:
            x, stem, label = read_image(image), image.stem, ""
        wrapped = Model(load_builtin(model), batch_size=batch_size)
        explanation = configured.explain(wrapped, x, target)
        calibration = wrapped.ledger.calibration_seconds  # one-time, kept out of cost.seconds
        predicted = CLASS_NAMES[int(wrapped.predict(x)[0])]
        explained = (
            CLASS_NAMES[int(explanation.target[0])] if explanation.target is not None else "-"
        )
        scores = insertion(wrapped, x, explanation), deletion(wrapped, x, explanation)
        out.mkdir(parents=True, exist_ok=True)
        title = f"{method} · {model} · {explained}"
        png = save_overlay(
            out / f"{stem}-{model}-{method}.png",
            x[0],
            explanation.attributions[0],
            mask=mask,
            title=title,
        )
        raw = explanation.save(out / f"{stem}-{model}-{method}.safetensors")
        cost = explanation.cost
        console.print(f"predicted: {predicted}{label}", highlight=False)
        console.print(f"explained: {explained}", highlight=False)
        console.print(
            f"cost: {cost.forward} forward + {cost.backward} backward passes, "
            f"{cost.seconds:.2f} s (+ {calibration:.2f} s choosing the batch size)",
            highlight=False,
            soft_wrap=True,
        )
        for result in scores:
            better = "higher" if result.higher_is_better else "lower"
            console.print(
                f"{result.metric} AUC: {result.mean:.4f} ({better} is better)", highlight=False
            )
        console.print(f"wrote {png}\nwrote {raw}", highlight=False, soft_wrap=True)


@app.command()
def bench(
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models; default: all built-in.")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods; default: all registered.")
    ] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated metrics.")] = "insertion,deletion",
    samples: Annotated[int, typer.Option(help="Images per (model, method).")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of random methods and tie-breaks.")] = 0,
    data_seed: Annotated[int, typer.Option(help="Seed of the built-in images.")] = 0,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A method parameter method.key=value (repeatable), e.g. rise.n_masks=500.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.csv and results.json.")] = Path(
        "faithmap-bench"
    ),
    batch_size: Annotated[
        int | None, typer.Option(help="Rows per model call; default: the fastest, measured.")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch CPU threads (torch.set_num_threads); default: torch's own."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Benchmark methods × built-in models on built-in data with insertion and deletion."""
    with _clean_errors():
        if threads is not None:
            torch.set_num_threads(check_int(threads, "threads", "faithmap bench", low=1))
        method_params = {k: dict(v) for k, v in DEFAULT_METHOD_PARAMS.items()}
        for text in param or []:
            key, value = parse_param(text)
            name, dot, field = key.partition(".")
            if not dot or not field:
                raise InvalidParameterError(
                    f"A bench --param must look like method.key=value (for example "
                    f"rise.n_masks=500). Got {text!r} instead."
                )
            method_params.setdefault(name, {})[field] = value
        options: dict[str, Any] = {}
        if (model_names := _split(models, "models")) is not None:
            options["models"] = model_names
        if (method_names := _split(methods, "methods")) is not None:
            options["methods"] = method_names
        config = BenchConfig(
            metrics=_split(metrics, "metrics") or [],
            n_samples=samples,
            seed=seed,
            data_seed=data_seed,
            out=out,
            method_params=method_params,
            batch_size=batch_size,
            **options,
        )
        rows = run_bench(config, progress=progress)
        table = Table(title=f"faithmap bench: {config.n_samples} images, mean ± std")
        for column in ("model", "method"):
            table.add_column(column)
        for metric in config.metrics:
            arrow = "↑" if metric == "insertion" else "↓" if metric == "deletion" else ""
            table.add_column(f"{metric} {arrow}".strip(), justify="right")
        for column in ("passes/img", "s/img", "metric s/img"):
            table.add_column(column, justify="right")
        for row in summarize(rows):
            table.add_row(
                row.model,
                row.method,
                *(f"{row.metrics[m][0]:.3f} ± {row.metrics[m][1]:.3f}" for m in config.metrics),
                f"{row.passes_per_image:.0f}",
                f"{row.seconds_per_image:.3f}",
                f"{row.metric_seconds_per_image:.3f}",
            )
        (console if console.is_terminal else Console(width=120)).print(table)  # pipes: 120 wide
        console.print(f"wrote {config.out / 'results.csv'} and {config.out / 'results.json'}")


def main() -> None:
    """Entry point of the ``faithmap`` console script."""
    app()
