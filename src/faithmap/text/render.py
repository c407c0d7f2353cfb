"""Word attributions as highlighted text: ANSI colours for a terminal, and HTML.

Each word's background is blended from white towards red for a positive attribution (the word
speaks for the target) and towards blue for a negative one, in proportion to its score over
the largest absolute score of the text. The text between words is kept as it is. Words the
model's vocabulary lacks are marked ``unknown``: the model reads them all as one unknown token.
Subset-selection methods (``lima``, ``smdl``) rank words; their numbers are the step at which a
word was chosen (``#1`` first). :func:`prediction_line` and :func:`legend_lines` say so in words.
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


def _visible(text: str) -> str:
    """``text`` with control characters (a terminal's escape codes) written as escapes."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _label(explained: TextExplanation, index: int, ranks: list[int] | None, digits: int = 3) -> str:
    """What the brackets after word ``index`` say: its score (``digits`` significant digits)
    or rank, and ``unknown``."""
    score = float(explained.word_scores[index])
    value = f"#{ranks[index]}" if ranks is not None else f"{score:+.{digits}g}"
    unknown = index in explained.tokens.unknown_words
    return f"{value}, unknown" if unknown else value


def _ranks(explained: TextExplanation) -> list[int] | None:
    ranks = explained.word_ranks
    return None if ranks is None else [int(rank) for rank in ranks]


def render_terminal(explained: TextExplanation, *, colour: bool = True) -> str:
    """The text with each word's background coloured by its attribution (24-bit ANSI).

    Parameters
    ----------
    explained : TextExplanation
        From :func:`~faithmap.text.explain_text`.
    colour : bool, default=True
        ``False`` writes plain text with each word's score in brackets after it (for logs and
        terminals without colour). Either way, a ranked word's brackets give its step
        (``[#1]``: chosen first) and a word unknown to the vocabulary is marked ``unknown``.
        Control characters in the text are written as escapes (``\\x1b``), never sent.

    Returns
    -------
    str
        One line per line of the text.

    References
    ----------
    ECMA-48, "Control Functions for Coded Character Sets" (SGR 48;2 background colours).
    """
    shades = _shades(explained.word_scores)
    ranks = _ranks(explained)
    unknown = set(explained.tokens.unknown_words)
    parts = []
    for piece, index in _pieces(explained):
        piece = _visible(piece)
        if index is None:
            parts.append(piece)
        elif colour:
            red, green, blue = shades[index]
            parts.append(f"\x1b[38;2;0;0;0m\x1b[48;2;{red};{green};{blue}m{piece}{RESET}")
            if ranks is not None or index in unknown:
                parts.append(f"[{_label(explained, index, ranks)}]")
        else:
            parts.append(f"{piece}[{_label(explained, index, ranks)}]")
    return "".join(parts)


def prediction_line(explained: TextExplanation) -> str:
    """The predicted and the explained class in words, and the method.

    Examples
    --------
    ``predicted: positive (class 1), probability 0.98; explained: positive (class 1), by
    integrated_gradients``
    """
    predicted = explained.predicted
    probability = float(explained.probabilities[predicted])
    target = explained.target
    explained_as = "a custom score" if target is None else explained.class_name(target)
    return (
        f"predicted: {explained.class_name(predicted)}, probability {probability:.2f}; "
        f"explained: {explained_as}, by {explained.method}"
    )


def legend_lines(explained: TextExplanation, *, colour: bool = False) -> list[str]:
    """What the colours, the numbers and the ``unknown`` marks of the rendered text mean."""
    method, run_as = explained.method, explained.explanation.method
    target = explained.target
    about = "the score" if target is None else explained.class_name(target)
    lines = []
    if explained.word_ranks is not None:
        lines.append(
            f"[#k]: the step at which {method} chose the word's region for {about}, of "
            f"{explained.regions.count} (#1 first, the most important)"
            + ("; earlier is darker." if colour else ".")
        )
    elif colour:
        lines.append(f"colours: {method} attribution, red for {about}, blue against it.")
    else:
        lines.append(
            f"[numbers]: each word's {method} attribution to {about}: + for it, - against it."
        )
    if method != run_as:
        lines.append(f"{method} on a text removes one region at a time: it runs as {run_as}.")
    unknown = explained.tokens.unknown_words
    if unknown:
        spelled = ", ".join(repr(explained.words[index]) for index in unknown)
        token = _unknown_token(explained)
        lines.append(
            f"unknown: {spelled} {'is' if len(unknown) == 1 else 'are'} not in the model's "
            f"vocabulary; the model reads {'it' if len(unknown) == 1 else 'each'} as {token}, "
            "whatever the word: its score is that token's at this place, not the word's."
        )
    return lines


def _unknown_token(explained: TextExplanation) -> str:
    tokens = explained.tokens
    positions = [i for i, flag in enumerate(tokens.unknown.tolist()) if flag]
    return tokens.tokens[positions[0]] if positions else "the unknown token"


def render_html(explained: TextExplanation, *, title: str | None = None) -> str:
    """A self-contained HTML fragment: the text with highlighted words, scores on hover.

    Every piece of the text is HTML-escaped. ``title`` (escaped too) is shown above the text;
    the predicted and explained classes (:func:`prediction_line`) come under it, and the
    method, the meaning of the colours and numbers and the unknown words
    (:func:`legend_lines`) follow the text. Unknown words are underlined with a dotted line
    and a superscript ``?``.

    References
    ----------
    Sundararajan, Taly, Yan, "Axiomatic Attribution for Deep Networks", ICML 2017 (the
    highlighted-text display of word attributions).
    """
    shades = _shades(explained.word_scores)
    ranks = _ranks(explained)
    unknown = set(explained.tokens.unknown_words)
    spans = []
    for piece, index in _pieces(explained):
        if index is None:
            spans.append(html.escape(piece))
            continue
        red, green, blue = shades[index]
        hover = _label(explained, index, ranks, digits=4).replace(
            "unknown", "unknown to the vocabulary"
        )
        mark = ""
        style = f"background-color: rgb({red}, {green}, {blue}); padding: 0 1px; border-radius: 2px"
        if index in unknown:
            style += "; text-decoration: underline dotted"
            mark = '<sup class="unknown">?</sup>'
        spans.append(
            f'<span class="word" style="{style}" title="{html.escape(hover)}">'
            f"{html.escape(piece)}</span>{mark}"
        )
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    notes = "".join(f"<li>{html.escape(line)}</li>" for line in legend_lines(explained))
    legend = (
        f'<span style="color: rgb{POSITIVE}">darker red: chosen earlier</span>'
        if ranks is not None
        else f'<span style="color: rgb{POSITIVE}">red: for the explained class</span> · '
        f'<span style="color: rgb{NEGATIVE}">blue: against</span>'
    )
    return (
        '<div class="faithmap-text" style="font-family: sans-serif; line-height: 1.8">'
        f'{heading}<p class="prediction">{html.escape(prediction_line(explained))}</p>'
        f'<p style="white-space: pre-wrap">{"".join(spans)}</p>'
        f'<p style="font-size: 0.85em; color: #555">{legend}</p>'
        f'<ul class="legend" style="font-size: 0.85em; color: #555">{notes}</ul></div>'
    )
