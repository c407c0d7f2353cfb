"""``faithmap explain --text``: one text, explained per word, printed highlighted and saved.

The built-in word model (``word_cnn``) and its tokenizer are plain torch and Python; a Hugging
Face model (a ``save_pretrained`` directory or ``hf:NAME``) needs ``faithmap[text]``.
"""

from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Any

from rich.text import Text

from faithmap.cli.common import console, file_stem, say

TEXT_MODEL = "word_cnn"
"""The ``--model`` name of faithmap's own text classifier (the default for ``--text``)."""


def explain_text_input(
    text: str,
    *,
    method: str | None,
    params: dict[str, Any],
    model_spec: str | None,
    target: int | None,
    batch_size: int | None,
    out: Path,
) -> None:
    """Explain a text classifier's decision on one text; print it highlighted, save HTML.

    The files are named after the method asked for (``text-occlusion.html``), whatever name
    the method runs under; the console says what the classes, numbers and marks mean.
    """
    from faithmap.text import (
        explain_text,
        legend_lines,
        load_word_cnn,
        make_tokenizer,
        prediction_line,
        render_html,
        render_terminal,
    )

    if model_spec in (None, TEXT_MODEL):
        model: Any = load_word_cnn()
        tokenizer: Any = make_tokenizer()
    else:
        from faithmap.text import load_text_classifier

        model, tokenizer = load_text_classifier(model_spec)
    explained = explain_text(
        model,
        tokenizer,
        text,
        method=method or "integrated_gradients",
        target=target,
        batch_size=batch_size,
        **params,
    )
    out.mkdir(parents=True, exist_ok=True)
    name = file_stem(explained.method)
    page = out / f"text-{name}.html"
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>faithmap: '
        f"{html.escape(explained.method)}</title></head><body>"
        f"{render_html(explained, title=text[:60])}</body></html>\n"
    )
    page.write_text(document, encoding="utf-8")
    raw = explained.explanation.save(out / f"text-{name}.safetensors")
    colour = sys.stdout.isatty()
    say(prediction_line(explained))
    if colour:  # render_terminal escapes the text's own control characters
        console.print(Text.from_ansi(render_terminal(explained)), soft_wrap=True)
    else:
        say(render_terminal(explained, colour=False))
    for line in legend_lines(explained, colour=colour):
        say(line)
    say(f"wrote {page}\nwrote {raw}")
