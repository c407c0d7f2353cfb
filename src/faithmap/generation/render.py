"""A generation explanation as a self-contained HTML heatmap: generated steps x prompt features.

Each cell's background is blended from white towards red for a positive attribution (the
feature raises the step's target, the log-probability of its token) and towards blue for a
negative one, in proportion to the value over the largest absolute value *of its row*: steps'
targets differ in scale, so each step is read on its own. The cells print the raw values. Every
text (prompt, features, tokens, method, title) is HTML-escaped; the page loads nothing.
"""

from __future__ import annotations

import html
import math

from faithmap.generation.explanation import GenerationExplanation

POSITIVE = (214, 39, 40)
NEGATIVE = (31, 119, 180)
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;font-size:0.9em}"
    "th,td{border:1px solid #ddd;padding:0.3em 0.5em;text-align:right;white-space:pre}"
    "thead th{text-align:center;vertical-align:bottom;max-width:12em;overflow-wrap:anywhere;"
    "white-space:pre-wrap}"
    "tbody th{text-align:left}.meta{color:#555}.nan{background:#eee;color:#999}"
)


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _shade(value: float, scale: float) -> str:
    """The CSS background of ``value`` in a row whose largest absolute value is ``scale``."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    hue = POSITIVE if value > 0 else NEGATIVE
    red, green, blue = (round(255 + strength * (channel - 255)) for channel in hue)
    return f"rgb({red},{green},{blue})"


def _row(step: int, token: str, score: float, values: list[float]) -> str:
    finite = [abs(v) for v in values if math.isfinite(v)]
    scale = max(finite, default=0.0)
    cells = []
    for value in values:
        if not math.isfinite(value):
            cells.append(f'<td class="nan">{_escape(value)}</td>')
            continue
        cells.append(
            f'<td style="background:{_shade(value, scale)}" title="{value!r}">{value:+.3g}</td>'
        )
    head = f"<th>{step}. {_escape(token)}</th><td>{score:.3f}</td>"
    return f"<tr>{head}{''.join(cells)}</tr>"


def render_html(explanation: GenerationExplanation, *, title: str | None = None) -> str:
    """The heatmap of ``explanation`` as one HTML document (inline style, no scripts).

    Parameters
    ----------
    explanation : GenerationExplanation
        From :func:`~faithmap.generation.explain_generation`.
    title : str or None
        The page's heading; by default the method's name.

    Returns
    -------
    str
        A complete ``<!doctype html>`` document: the prompt, the continuation, the method, its
        configuration and cost, and the table (one row per generated step with its token and
        its target's value, one column per prompt feature).

    References
    ----------
    Sarti et al., "Inseq: An Interpretability Toolkit for Sequence Generation Models", ACL 2023
    (System Demonstrations): the steps x source-features attribution matrix shown as a heatmap.
    """
    heading = title if title is not None else f"faithmap: {explanation.method}"
    prompt = explanation.continuation.prompt
    prompt_text = prompt.text if prompt.text is not None else " ".join(prompt.tokens)
    config = ", ".join(f"{key}={value!r}" for key, value in explanation.config.items())
    cost = explanation.cost
    columns = "".join(f"<th>{_escape(name)}</th>" for name in explanation.feature_names)
    matrix = explanation.attributions.double().tolist()
    scores = explanation.scores.double().tolist()
    rows = [
        _row(step + 1, token, scores[step], matrix[step])
        for step, token in enumerate(explanation.step_tokens)
    ]
    contrastive = explanation.continuation.contrast is not None
    target = "log p(token) - log p(contrast)" if contrastive else "log p(token)"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_escape(heading)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_escape(heading)}</h1>"
        f"<p><b>Prompt:</b> {_escape(prompt_text)}</p>"
        f"<p><b>Continuation ({_escape(explanation.continuation.generated)}):</b> "
        f"{_escape(' '.join(explanation.step_tokens))}</p>"
        f'<p class="meta">{_escape(explanation.method)} over {len(explanation.feature_names)} '
        f"{_escape(explanation.features.kind)}; {_escape(config)}; {cost.forward} forward + "
        f"{cost.backward} backward passes, {cost.seconds:.2f} s.</p>"
        f'<p class="meta">Rows: generated steps; columns: prompt features. Cells: raw '
        f"attributions to the step's {_escape(target)}, red raising it, blue lowering it, "
        "each row coloured by its own largest absolute value.</p>"
        f"<table><thead><tr><th>step</th><th>{_escape(target)}</th>{columns}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>\n"
    )
