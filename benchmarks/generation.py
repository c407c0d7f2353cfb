"""Generation attribution: passes and seconds per generated token, faithmap against Captum.

Usage: ``python benchmarks/generation.py [--layers 12] [--words 16] [--new-tokens 8]
[--repeats 1] [--threads 1] [--out PATH]``.

A GPT-2-small-shaped model (768 wide, 12 heads, 50,257 tokens, ``--layers`` layers; random
weights, CPU) explains a prompt of ``--words`` words (one token each, a word-level tokenizer)
and a greedy continuation of ``--new-tokens`` tokens, per token. Each method runs in faithmap
(``explain_generation``, batch size 16) and the same work in Captum 0.9 (``LLMAttribution`` /
``LLMGradientAttribution``) in the same run, alternating: feature ablation (``F + 1``
coalitions), KernelSHAP and LIME (``--samples`` coalitions; Captum gives only the sequence
attribution for these, the work is the same), Integrated Gradients (``--ig-steps`` points per
step, Captum's ``LayerIntegratedGradients`` on the embedding layer) and Input x Gradient
(Captum's ``LayerGradientXActivation``). Captum's perturbation methods are timed in both of
its modes: the default ``forward_in_tokens=True`` (one cached decoding pass per generated token
and coalition) and ``forward_in_tokens=False`` (one teacher-forced pass per coalition, as
faithmap), so "equal passes" is the second column; ``--one-pass-only`` times the second alone.
Faithmap's perturbation rows continue the clean prompt's cached prefix
(:mod:`faithmap.generation.prefix_cache`). Results are printed and saved as JSON
after every method (default ``benchmarks/results/generation_by_tokens.json``; ``--methods``
picks a subset; ``generation_ab.py`` is the interleaved A/B of the one-pass mode) with the load
average: rerun when it is above the core count. A ratio above 1 means
Captum is slower. On a loaded 2-core machine the 12-layer run of every method takes over 25
minutes (Captum's token-by-token KernelSHAP and LIME alone about 20).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers
from captum.attr import (
    FeatureAblation,
    KernelShap,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Lime,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from tokenizers import Tokenizer, models, pre_tokenizers

from faithmap.generation import explain_generation


def word_tokenizer(vocabulary: int) -> Any:
    """A word-level fast tokenizer: word ``w{i}`` is token ``i`` (0 is the pad token)."""
    words = {"<pad>": 0, **{f"w{i}": i for i in range(1, vocabulary)}}
    core = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<pad>"
    )


def best(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--words", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    parser.add_argument(
        "--one-pass-only",
        action="store_true",
        help="skip Captum's token-by-token mode (the slowest part of the run)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/generation_by_tokens.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=args.layers, bos_token_id=0, eos_token_id=0)
    model: Any = transformers.GPT2LMHeadModel(config)
    model.eval()
    tokenizer = word_tokenizer(config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, config.vocab_size, (args.words,), generator=generator)
    prompt = " ".join(f"w{i}" for i in ids.tolist())
    ours_kwargs: dict[str, Any] = dict(
        tokenizer=tokenizer, features="tokens", baseline="pad", batch_size=16
    )
    first = explain_generation(
        model, prompt, max_new_tokens=args.new_tokens, method="attention", **ours_kwargs
    )
    target = first.step_ids
    ours_kwargs["continuation"] = target
    steps = int(target.shape[0])
    inp = TextTokenInput(prompt, tokenizer, baselines=0)
    embedding = model.get_input_embeddings()
    captum: dict[str, Callable[[bool], object]] = {
        "feature_ablation": lambda tokens: LLMAttribution(
            FeatureAblation(model), tokenizer
        ).attribute(inp, target=target, forward_in_tokens=tokens),
        "kernel_shap": lambda tokens: LLMAttribution(KernelShap(model), tokenizer).attribute(
            inp, target=target, forward_in_tokens=tokens, n_samples=args.samples
        ),
        "lime": lambda tokens: LLMAttribution(Lime(model), tokenizer).attribute(
            inp, target=target, forward_in_tokens=tokens, n_samples=args.samples
        ),
        "integrated_gradients": lambda _: LLMGradientAttribution(
            LayerIntegratedGradients(model, embedding), tokenizer
        ).attribute(inp, target=target, n_steps=args.ig_steps),
        "input_x_gradient": lambda _: LLMGradientAttribution(
            LayerGradientXActivation(model, embedding), tokenizer
        ).attribute(inp, target=target),
    }
    params: dict[str, dict[str, Any]] = {
        "kernel_shap": {"n_samples": args.samples, "exact": False},
        "lime": {"n_samples": args.samples},
        "integrated_gradients": {"steps": args.ig_steps},
    }
    rows: list[dict[str, Any]] = []
    chosen = [m for m in args.methods.split(",") if m] or [
        *captum,
        "attention",
        "attention_rollout",
    ]
    for method in chosen:
        explanation = explain_generation(
            model, prompt, method=method, **ours_kwargs, **params.get(method, {})
        )

        def ours(method: str = method) -> object:
            return explain_generation(
                model, prompt, method=method, **ours_kwargs, **params.get(method, {})
            )

        seconds = best(ours, args.repeats)
        row: dict[str, Any] = {
            "method": method,
            "passes_per_token": explanation.cost.passes / steps,
            "seconds_per_token": seconds / steps,
        }
        if method in captum:
            gradient = method in ("integrated_gradients", "input_x_gradient")
            run = captum[method]
            one_pass = best(partial(run, False), args.repeats)
            row["captum_seconds_per_token"] = one_pass / steps
            row["captum_over_faithmap"] = one_pass / seconds
            if not gradient and not args.one_pass_only:
                by_tokens = best(partial(run, True), args.repeats)
                row["captum_in_tokens_seconds_per_token"] = by_tokens / steps
                row["captum_in_tokens_over_faithmap"] = by_tokens / seconds
        rows.append(row)
        print(json.dumps(row), flush=True)
        record = {
            "model": f"GPT-2 small shape, {args.layers} layers, random weights",
            "prompt_tokens": args.words,
            "generated_tokens": steps,
            "samples": args.samples,
            "ig_steps": args.ig_steps,
            "threads": args.threads,
            "load_average": os.getloadavg()[0],
            "rows": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")  # after every row


if __name__ == "__main__":
    main()
