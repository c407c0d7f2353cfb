"""Generation attribution, interleaved A/B: faithmap with and without the prefix cache vs Captum.

Usage: ``python benchmarks/generation_ab.py [--models gpt,gpt2] [--repeats 3] [--threads 1]
[--methods feature_ablation,kernel_shap,lime,integrated_gradients] [--batch-size 16,64]
[--out PATH]``, or
``--profile`` for the per-call cost behind :data:`faithmap.generation.prefix_cache.CALL_POSITIONS`.

Two models: faithmap's built-in GPT (``gpt``: ``load_gpt()``, 2 layers, 64 wide, plain torch, no
key-value cache) and a GPT-2-small-shaped model (``gpt2``: ``transformers.GPT2Config`` with
``--layers`` layers, random weights). A prompt of ``--words`` random tokens (one per word, a
word-level tokenizer) and a greedy continuation of ``--new-tokens`` tokens, features the tokens,
removal the pad token (id 0) on both sides. Per method, ``--repeats`` rounds each run every
variant once in a rotating order (faithmap with the cache, without it, Captum's one-pass
``LLMAttribution(..., forward_in_tokens=False)`` / ``LLMGradientAttribution(
LayerIntegratedGradients)``), in one process; the median seconds are compared. A forward
pre-hook on the model counts every call, the rows and the token positions each variant runs
(faithmap's own ledger counts rows it serves from the cache too). The load average is recorded
before and after each method. A ratio above 1 means Captum is slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import transformers
from captum.attr import (
    FeatureAblation,
    KernelShap,
    LayerIntegratedGradients,
    Lime,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from torch import Tensor, nn

import faithmap.generation.scoring as scoring
from faithmap.generation import explain_generation
from faithmap.generation.gpt import load_gpt
from faithmap.generation.language_model import CausalLM
from faithmap.generation.prefix_cache import caches_prefix

sys.path.insert(0, str(Path(__file__).parent))
from generation import word_tokenizer


class WithLogits(nn.Module):
    """The built-in GPT returning ``.logits``, as Captum's LLM attribution reads them."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, **_: Any) -> Any:
        return SimpleNamespace(logits=self.gpt(input_ids, attention_mask))


class Counter:
    """Calls, rows and token positions of every forward call of a module."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = self.rows = self.positions = 0
        module.register_forward_pre_hook(self.count, with_kwargs=True)

    def count(self, _: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        self.calls += 1
        self.rows += int(ids.shape[0])
        self.positions += int(ids.shape[0] * ids.shape[1])

    def take(self) -> dict[str, int]:
        out = {"calls": self.calls, "rows": self.rows, "positions": self.positions}
        self.calls = self.rows = self.positions = 0
        return out


def build(name: str, layers: int) -> tuple[nn.Module, nn.Module, nn.Module, int]:
    """(the model faithmap explains, the one Captum explains, the counted module, vocabulary)."""
    torch.manual_seed(0)
    if name == "gpt":
        gpt = load_gpt().eval()
        return gpt, WithLogits(gpt).eval(), gpt, gpt.embedding.num_embeddings
    config = transformers.GPT2Config(n_layer=layers, bos_token_id=0, eos_token_id=0)
    model: Any = transformers.GPT2LMHeadModel(config)
    model.eval()
    return model, model, model.transformer, config.vocab_size  # Captum calls .forward


def profile(layers: int, repeats: int) -> None:
    """Seconds per token position of GPT-2 small at one row and at 16 rows (24 positions)."""
    model, _, _, vocabulary = build("gpt2", layers)
    ids = torch.randint(1, vocabulary, (16, 24), generator=torch.Generator().manual_seed(0))
    times: dict[int, list[float]] = {1: [], 16: []}
    with torch.inference_mode():
        for _ in range(repeats):
            for rows in times:
                x = ids[:rows]
                started = time.perf_counter()
                model(input_ids=x, attention_mask=torch.ones_like(x), logits_to_keep=8)
                times[rows].append((time.perf_counter() - started) / (rows * 24))
    one, batched = (statistics.median(times[r]) for r in (1, 16))
    print(json.dumps({"seconds_per_position_1_row": one, "seconds_per_position_16_rows": batched,
                      "call_cost_in_positions": 24 * (one - batched) / batched}))  # fmt: skip


def measure(name: str, args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Every method on model ``name``: interleaved repeats, rows appended to ``record``."""
    ours_model, their_model, counted, vocabulary = build(name, args.layers)
    counter = Counter(counted)
    tokenizer = word_tokenizer(vocabulary)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocabulary, (args.words,), generator=generator)
    prompt = " ".join(f"w{i}" for i in ids.tolist())
    target = CausalLM(ours_model).generate(ids, args.new_tokens)
    counter.take()
    steps = int(target.shape[0])
    inp = TextTokenInput(prompt, tokenizer, baselines=0)
    embedding: Any = ours_model.get_input_embeddings()  # type: ignore[operator]
    captum: dict[str, Callable[[], object]] = {
        "feature_ablation": lambda: LLMAttribution(
            FeatureAblation(their_model), tokenizer
        ).attribute(inp, target=target, forward_in_tokens=False),
        "kernel_shap": lambda: LLMAttribution(KernelShap(their_model), tokenizer).attribute(
            inp, target=target, forward_in_tokens=False, n_samples=args.samples
        ),
        "lime": lambda: LLMAttribution(Lime(their_model), tokenizer).attribute(
            inp, target=target, forward_in_tokens=False, n_samples=args.samples
        ),
        "integrated_gradients": lambda: LLMGradientAttribution(
            LayerIntegratedGradients(their_model, embedding), tokenizer
        ).attribute(inp, target=target, n_steps=args.ig_steps),
    }
    params: dict[str, dict[str, Any]] = {
        "kernel_shap": {"n_samples": args.samples, "exact": False},
        "lime": {"n_samples": args.samples},
        "integrated_gradients": {"steps": args.ig_steps},
    }
    for method in args.methods.split(","):

        def ours(cache: bool, size: int, method: str = method) -> object:
            off = caches_prefix if cache else (lambda lm: False)
            scoring.caches_prefix = off  # type: ignore[attr-defined]
            try:
                return explain_generation(
                    ours_model, prompt, tokenizer=tokenizer, continuation=target,
                    features="tokens", baseline="pad", batch_size=size,
                    method=method, **params.get(method, {}),
                )  # fmt: skip
            finally:
                scoring.caches_prefix = caches_prefix  # type: ignore[attr-defined]

        variants: dict[str, Callable[[], object]] = {"captum": captum[method]}
        sizes = [int(size) for size in args.batch_size.split(",")]
        caching = name == "gpt2" and method in ("feature_ablation", "kernel_shap", "lime")
        for size in sizes:
            tail = f"_b{size}" if len(sizes) > 1 else ""
            variants[f"faithmap_uncached{tail}"] = partial(ours, False, size)
            if caching:
                variants[f"faithmap_cached{tail}"] = partial(ours, True, size)
        seconds: dict[str, list[float]] = {v: [] for v in variants}
        work: dict[str, dict[str, int]] = {}
        load_before = os.getloadavg()
        names = list(variants)
        if name == "gpt":  # untimed: first calls import and compile what they need
            for variant in names:
                variants[variant]()
            counter.take()
        for repeat in range(args.repeats):
            for variant in names[repeat % len(names) :] + names[: repeat % len(names)]:
                started = time.perf_counter()
                variants[variant]()
                seconds[variant].append(time.perf_counter() - started)
                work[variant] = counter.take()  # the same every repeat
        median = {v: statistics.median(s) for v, s in seconds.items()}
        row: dict[str, Any] = {
            "model": name,
            "method": method,
            "median_seconds": median,
            "seconds": seconds,
            "model_work": work,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            **{f"captum_over_{v}": median["captum"] / median[v] for v in median if v != "captum"},
            "steps": steps,
        }
        record["rows"].append(row)
        print(json.dumps({k: row[k] for k in row if k != "seconds"}), flush=True)
        record["load_average_after"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")  # after every row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="gpt,gpt2")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--words", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--batch-size", default="16", help="rows per call; several: 16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--methods", default="feature_ablation,kernel_shap,lime,integrated_gradients"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generation.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    if args.profile:
        profile(args.layers, args.repeats)
        return
    record: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "prompt_tokens": args.words,
        "generated_tokens": args.new_tokens,
        "samples": args.samples,
        "ig_steps": args.ig_steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "load_average_before": os.getloadavg(),
        "rows": [],
    }
    for name in args.models.split(","):
        measure(name, args, record)


if __name__ == "__main__":
    main()
