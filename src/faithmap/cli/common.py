"""What every ``faithmap`` command shares: the app, the consoles, errors, parameter parsing."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from faithmap.data import CLASS_NAMES
from faithmap.errors import FaithmapError, FileProblemError, InvalidParameterError

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
def clean_errors() -> Iterator[None]:
    """Turn a :class:`FaithmapError` into ``error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except FaithmapError as err:
        errors.print(Text(printable(f"error: {err}"), style="bold red"), soft_wrap=True)
        raise typer.Exit(code=2) from err


def writable_folder(folder: Path, option: str = "--out") -> Path:
    """``folder``, created if needed; an error unless it is a folder faithmap can write into."""
    if folder.exists() and not folder.is_dir():
        raise FileProblemError(
            f"{option} {str(folder)!r} is an existing file, not a folder. Give a folder path."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileProblemError(
            f"Could not create the {option} folder {str(folder)!r} ({err.strerror or err}). "
            "Give a folder you can write into."
        ) from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileProblemError(
            f"The {option} folder {str(folder)!r} is not writable. Give a folder you can "
            "write into."
        )
    return folder


def parse_target(text: str | None) -> int | None:
    """``--target`` as a class index (an int ≥ 0) or ``None``."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidParameterError(
            f"--target must be a class index, a whole number >= 0. Got {text!r} instead."
        )
    return value


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape codes) shown as escapes."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def file_stem(text: str) -> str:
    """A file-name part made of ``text``: letters, digits, ``._-`` only, so a name built from
    it stays inside the output folder (no ``/``, no ``..`` path steps)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "out"
    return cleaned[:120]


def plain_text(text: str) -> str:
    """reStructuredText of a docstring's first line as plain text: ````x```` and
    ``:func:`~a.b``` become ``x`` and ``b``.

    Examples
    --------
    >>> plain_text("Noise of radius ``radius``; see :func:`~faithmap.metrics.insertion`.")
    'Noise of radius radius; see insertion.'
    """
    text = re.sub(
        r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", lambda m: m.group(1).split(".")[-1], text
    )
    return text.replace("``", "")


def builtin_model_note(model: str, size: tuple[int, int] | None, keep_aspect: bool) -> str:
    """What a built-in model can say about a user's own image: it knows only the synthetic
    shapes it was trained on, and the image is resized to its input (printed once)."""
    height, width = size or (64, 64)
    resized = (
        f"fitted into {height}x{width} and padded"
        if keep_aspect
        else f"resized to {height}x{width} without keeping its aspect ratio"
    )
    return (
        f"note: the built-in model {model!r} knows only {len(CLASS_NAMES)} synthetic shapes "
        f"({', '.join(CLASS_NAMES)}) drawn at 64x64, so it names one of them whatever the image "
        f"shows; each image is {resized}. For your own model, give --model (a TorchScript, "
        "state-dict or ONNX file, or torchvision:NAME, timm:NAME, hf:NAME)."
    )


def refuse_flags(unused: Mapping[str, object], suite: str, why: str) -> None:
    """Refuse the flags of ``unused`` that were given (not ``None``): they do not apply to the
    suite ``suite``, for the reason and with the advice in ``why``."""
    given = [flag for flag, value in unused.items() if value is not None]
    if given:
        raise InvalidParameterError(f"{', '.join(given)} do not apply to the {suite} suite: {why}")


def progress_log(progress: bool) -> Callable[[str], None]:
    """A suite's progress lines: on stderr as they are, or dropped with ``--no-progress``."""

    def log(line: str) -> None:
        if progress:
            errors.print(line, highlight=False, soft_wrap=True)

    return log


def say(message: str) -> None:
    """Print a line as it is: no markup, no highlighting, no wrapping of long paths, control
    characters escaped."""
    console.print(printable(message), markup=False, highlight=False, soft_wrap=True)


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


def split_names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InvalidParameterError(f"--{what} needs at least one name. Got {text!r}.")
    return names


def dotted_params(
    texts: list[str] | None, option: str, what: str, example: str
) -> dict[str, dict[str, Any]]:
    """``["rise.n_masks=500"]`` as ``{"rise": {"n_masks": 500}}``."""
    params: dict[str, dict[str, Any]] = {}
    for text in texts or []:
        key, value = parse_param(text)
        name, dot, field = key.partition(".")
        if not dot or not field:
            raise InvalidParameterError(
                f"A bench {option} must look like {what}.key=value (for example {example}). "
                f"Got {text!r} instead."
            )
        params.setdefault(name, {})[field] = value
    return params
