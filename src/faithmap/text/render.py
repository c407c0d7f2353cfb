"""Word attributions as highlighted text: ANSI colours for a terminal, and HTML.

Each word's background is blended from white towards red for a positive attribution (the word
speaks for the target) and towards blue for a negative one, in proportion to its score over
the largest absolute score of the text. The text between words is kept as it is.
"""

from __future__ import annotations

import html

from torch import Tensor

from faithmap.text.explain import TextExplanation

POSITIVE = (214, 39, 40)
NEGATIVE = (31, 119, 180)
RESET = "\x1b[0m"


def _shades(scores: Tensor) -> list[tuple[int, int, int]]:
    """The background colour of each word score: white blended towards red or blue."""
    values = scores.detach().double().cpu()
    scale = float(values.abs().max())
    colours = []
    for value in values.tolist():
        strength = abs(value) / scale if scale > 0 else 0.0
        hue = POSITIVE if value > 0 else NEGATIVE
        colours.append(
            (
                round(255 + strength * (hue[0] - 255)),
                round(255 + strength * (hue[1] - 255)),
                round(255 + strength * (hue[2] - 255)),
            )
        )
    return colours


def _pieces(explained: TextExplanation) -> list[tuple[str, int | None]]:
    """The text cut into words (with their index) and the text between them (index ``None``)."""
    text = explained.tokens.text
    pieces: list[tuple[str, int | None]] = []
    cursor = 0
    for index, (start, end) in enumerate(explained.tokens.word_spans):
        if start > cursor:
            pieces.append((text[cursor:start], None))
        pieces.append((text[start:end], index))
        cursor = max(cursor, end)
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces


def render_terminal(explained: TextExplanation, *, colour: bool = True) -> str:
    """The text with each word's background coloured by its attribution (24-bit ANSI).

    Parameters
    ----------
    explained : TextExplanation
        From :func:`~faithmap.text.explain_text`.
    colour : bool, default=True
        ``False`` writes plain text with each word's score in brackets after it (for logs and
        terminals without colour).

    Returns
    -------
    str
        One line per line of the text.

    References
    ----------
    ECMA-48, "Control Functions for Coded Character Sets" (SGR 48;2 background colours).
    """
    shades = _shades(explained.word_scores)
    scores = explained.word_scores.tolist()
    parts = []
    for piece, index in _pieces(explained):
        if index is None:
            parts.append(piece)
        elif colour:
            red, green, blue = shades[index]
            parts.append(f"\x1b[38;2;0;0;0m\x1b[48;2;{red};{green};{blue}m{piece}{RESET}")
        else:
            parts.append(f"{piece}[{scores[index]:+.3g}]")
    return "".join(parts)


def render_html(explained: TextExplanation, *, title: str | None = None) -> str:
    """A self-contained HTML fragment: the text with highlighted words, scores on hover.

    Every piece of the text is HTML-escaped. ``title`` (escaped too) is shown above the text;
    the method, target and a colour legend follow it.

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (the
    highlighted-text display of word attributions).
    """
    shades = _shades(explained.word_scores)
    scores = explained.word_scores.tolist()
    spans = []
    for piece, index in _pieces(explained):
        if index is None:
            spans.append(html.escape(piece))
            continue
        red, green, blue = shades[index]
        spans.append(
            f'<span style="background-color: rgb({red}, {green}, {blue}); padding: 0 1px; '
            f'border-radius: 2px" title="{scores[index]:+.4g}">{html.escape(piece)}</span>'
        )
    result = explained.explanation
    target = "" if result.target is None else f", class {int(result.target[0])}"
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    legend = (
        f'<span style="color: rgb{POSITIVE}">red: for the target</span> · '
        f'<span style="color: rgb{NEGATIVE}">blue: against</span>'
    )
    return (
        '<div class="faithmap-text" style="font-family: sans-serif; line-height: 1.8">'
        f'{heading}<p style="white-space: pre-wrap">{"".join(spans)}</p>'
        f'<p style="font-size: 0.85em; color: #555">{html.escape(result.method)}'
        f"{html.escape(target)} · {legend}</p></div>"
    )
