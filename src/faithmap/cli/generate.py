"""``faithmap explain --generate "PROMPT"``: which prompt features drove each generated token.

The default model is faithmap's tiny GPT (:func:`~faithmap.generation.load_gpt`) with its word
tokenizer; ``--model hf:DIR`` loads a Hugging Face causal LM and its fast tokenizer from a local
directory (needs ``faithmap[text]``). The continuation is generated greedily; each step's token
is printed with its three strongest prompt features, and ``--out FILE.html`` writes the heatmap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from faithmap.cli.common import parse_param, say, writable_folder
from faithmap.errors import FileProblemError, InvalidParameterError

GPT_MODEL = "gpt"
"""The ``--model`` name of faithmap's own tiny GPT (the default for ``--generate``)."""
DEFAULT_METHOD = "feature_ablation"
DEFAULT_STEPS = 8
"""Tokens generated when ``--max-new-tokens`` is left out."""
FEATURE_KINDS = ("tokens", "words", "sentences")
GENERATION_ONLY = ("generate", "max_new_tokens", "features", "seed")
"""The ``explain`` options that only ``--generate`` reads."""
GENERATION_ALSO = ("model", "method", "param", "out", "batch_size", "threads")
"""The other ``explain`` options that ``--generate`` reads."""
TOP = 3


def _option(ctx: typer.Context, name: str) -> str:
    """The command-line spelling of the parameter ``name`` (``--max-new-tokens``)."""
    for param in ctx.command.params:
        if param.name == name:
            return "an input file or folder" if not param.opts[0].startswith("-") else param.opts[0]
    return name


def _verb(names: list[str], one: str, several: str) -> str:
    return one if len(names) == 1 else several


def given_options(ctx: typer.Context) -> list[str]:
    """The names of the parameters given on the command line (not left at their defaults)."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return [name for name, source in sources.items() if source and source.name == "COMMANDLINE"]


def wants_generation(ctx: typer.Context) -> bool:
    """Whether ``explain`` explains a generation; an error when a generation-only option comes
    without ``--generate``, or ``--generate`` with an option it does not read."""
    given = given_options(ctx)
    if "generate" not in given:
        stray = [_option(ctx, name) for name in given if name in GENERATION_ONLY]
        if stray:
            raise InvalidParameterError(
                f"{', '.join(stray)} {_verb(stray, 'applies', 'apply')} only to --generate "
                f'"PROMPT". Add --generate, or leave {_verb(stray, "it", "them")} out.'
            )
        return False
    others = [_option(ctx, n) for n in given if n not in GENERATION_ONLY + GENERATION_ALSO]
    if others:
        raise InvalidParameterError(
            f"{', '.join(others)} {_verb(others, 'does', 'do')} not apply to --generate, which "
            "reads only --model, "
            "--method, --param, --max-new-tokens, --features, --seed, --batch-size, --threads "
            f"and --out. Leave {_verb(others, 'it', 'them')} out."
        )
    return True


def _load(model_spec: str | None) -> Any:
    """The language model of ``--model``: the tiny GPT, or ``hf:DIR`` with its tokenizer."""
    from faithmap.generation import CausalLM, load_gpt
    from faithmap.generation.tasks import make_tokenizer

    if model_spec in (None, GPT_MODEL):
        return CausalLM(load_gpt(), tokenizer=make_tokenizer())
    folder = model_spec.removeprefix("hf:")
    if not model_spec.startswith("hf:") or not Path(folder).is_dir():
        raise FileProblemError(
            f"--model with --generate must be {GPT_MODEL} (faithmap's tiny GPT, the default) or "
            f"hf:DIR, a local directory written by save_pretrained. Got {model_spec!r}"
            + ("" if not model_spec.startswith("hf:") else ", which is not a directory")
            + "."
        )
    lm = CausalLM.from_pretrained(folder)
    if lm.tokenizer is None or not getattr(lm.tokenizer, "is_fast", False):
        raise FileProblemError(
            f"The model directory {folder!r} has no Hugging Face fast tokenizer. Save one there "
            "with tokenizer.save_pretrained(DIR)."
        )
    return lm


def _method(name: str, params: dict[str, Any], seed: int | None) -> Any:
    """The configured generation method; ``--seed`` set where the method draws at random."""
    from faithmap.generation import get_generation_method

    configured = get_generation_method(name, **params)
    if seed is None:
        return configured
    if "seed" not in configured.params():
        raise InvalidParameterError(
            f"--seed seeds a method's random draws; {name!r} draws none. Leave --seed out, or "
            "choose kernel_shap, lime, reagent or resampling."
        )
    if "seed" in params:
        raise InvalidParameterError("Give the seed once: --seed S or --param seed=S, not both.")
    return get_generation_method(name, **params, seed=seed)


def _check_length(lm: Any, prompt: str, steps: int) -> list[str]:
    """The tiny GPT's context holds prompt and continuation; its prompt words it does not know."""
    tokenizer = lm.tokenizer
    ids = tokenizer(prompt)["input_ids"]
    room = lm.model.context - len(ids)
    if steps > room:
        raise InvalidParameterError(
            f"The built-in GPT reads at most {lm.model.context} tokens; the prompt has "
            f"{len(ids)}, so --max-new-tokens must be at most {max(room, 0)}. Got {steps}; "
            "shorten the prompt or lower --max-new-tokens."
        )
    pieces = tokenizer(prompt)["offset_mapping"]
    return [
        prompt[a:b] for (a, b), i in zip(pieces, ids, strict=True) if i == tokenizer.unk_token_id
    ]


def explain_generation_input(
    prompt: str,
    *,
    model_spec: str | None,
    method: str | None,
    params: list[str] | None,
    max_new_tokens: int | None,
    features: str | None,
    seed: int | None,
    batch_size: int | None,
    out: Path | None,
) -> None:
    """Generate a continuation of ``prompt``; print each step's token and its top prompt
    features with their attributions; write the HTML heatmap to ``out`` when given."""
    from faithmap.generation import explain_generation
    from faithmap.generation.render import render_html

    if not prompt.strip():
        raise InvalidParameterError(
            '--generate needs a prompt with at least one word, e.g. --generate "copy 3 a 7 b >".'
        )
    steps = DEFAULT_STEPS if max_new_tokens is None else max_new_tokens
    if steps < 1:
        raise InvalidParameterError(f"--max-new-tokens must be at least 1. Got {steps}.")
    kind = features or "words"
    if kind not in FEATURE_KINDS:
        raise InvalidParameterError(
            f"--features must be one of {', '.join(FEATURE_KINDS)}. Got {kind!r}."
        )
    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise InvalidParameterError(
            "With --generate, --out is the HTML heatmap to write: give a file name ending in "
            f".html (e.g. --out heatmap.html). Got {str(out)!r}."
        )
    configured = _method(method or DEFAULT_METHOD, dict(map(parse_param, params or [])), seed)
    if out is not None:
        if out.is_dir():
            raise FileProblemError(f"--out {str(out)!r} is a folder. Give an .html file name.")
        writable_folder(out.parent, "--out")
    lm = _load(model_spec)
    unknown = _check_length(lm, prompt, steps) if model_spec in (None, GPT_MODEL) else []
    if unknown:
        say(
            f"note: the built-in GPT knows only the words of its synthetic tasks (kv, copy, "
            f"count, the letters a-h, the digits, = ; ? > :); it reads {', '.join(unknown)} as "
            "[UNK]. For your own model, give --model hf:DIR."
        )
    explained = explain_generation(
        lm,
        prompt,
        method=configured,
        max_new_tokens=steps,
        features=kind,
        seed=0 if seed is None else seed,
        batch_size=batch_size,
    )
    names = explained.feature_names
    say(
        f"continuation ({explained.continuation.generated}, {explained.method} over "
        f"{len(names)} {kind}): {' '.join(explained.step_tokens)}"
    )
    k = min(TOP, len(names))
    values, indices = explained.attributions.topk(k, dim=1)
    for step, token in enumerate(explained.step_tokens):
        top = ", ".join(
            f'"{names[int(f)]}" {float(v):+.3g}'
            for v, f in zip(values[step], indices[step], strict=True)
        )
        score = float(explained.scores[step])
        say(f'step {step + 1} "{token}" (log p {score:.3g}): {top}')
    cost = explained.cost
    say(f"cost: {cost.forward} forward + {cost.backward} backward passes, {cost.seconds:.2f} s")
    if out is not None:
        try:
            out.write_text(
                render_html(explained, title=f"faithmap: {prompt[:60]}"), encoding="utf-8"
            )
        except OSError as err:
            raise FileProblemError(
                f"Could not write {str(out)!r} ({err.strerror or err}). Give a file you can write."
            ) from err
        say(f"wrote {out}")


def run_generation(ctx: typer.Context) -> None:
    """Explain the ``--generate`` prompt of the ``explain`` command with its options."""
    values = ctx.params
    explain_generation_input(
        values["generate"],
        model_spec=values["model"],
        method=values["method"],
        params=values["param"],
        max_new_tokens=values["max_new_tokens"],
        features=values["features"],
        seed=values["seed"],
        batch_size=values["batch_size"],
        out=values["out"] if "out" in given_options(ctx) else None,
    )
