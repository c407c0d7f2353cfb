"""Hit rates of generation attribution methods on the built-in GPT's synthetic tasks.

Usage: ``python benchmarks/generation_hit_rates.py [--examples 16] [--threads N] [--out PATH]``.

Each method explains ``--examples`` fresh examples of every task (key-value retrieval, copying,
counting; :mod:`faithmap.generation.tasks`) with the correct answer teacher-forced, the prompt's
content tokens as features and the ``[MASK]`` token as removal; only examples the model solves
count. A step is a hit when its top feature holds a prompt position the answer depends on. The
table also gives the share solved, a random ranking's expected hit rate (dependencies / content
tokens) and the faithfulness metrics of one example per task (ERASER comprehensiveness and
sufficiency, soft comprehensiveness) so that hit rates and metrics can be read side by side.
Prints a table and saves JSON. Methods that refuse the model (attention needs a Hugging Face
model) are listed with their error.

References
----------
Zhao and Shan, "ReAGent", ReLM workshop at AAAI 2024; Bogdan et al., "Thought Anchors", 2025.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from faithmap.generation import GENERATION_METHODS, explain_generation
from faithmap.generation.faithfulness import comprehensiveness, soft_comprehensiveness, sufficiency
from faithmap.generation.gpt import load_gpt
from faithmap.generation.hit_rates import hit_rates
from faithmap.generation.reagent import ReAGent
from faithmap.generation.resampling import SentenceResampling
from faithmap.generation.tasks import MASK_ID, TASKS, content_features, make_task

LIGHT: dict[str, dict[str, Any]] = {
    "kernel_shap": {"n_samples": 400},
    "lime": {"n_samples": 400},
    "integrated_gradients": {"steps": 32},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/generation_hit_rates.json")
    )
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    model = load_gpt()
    methods: dict[str, Any] = {name: name for name in sorted(GENERATION_METHODS)}
    methods["reagent"] = ReAGent()
    methods["resampling"] = SentenceResampling(samples=16)
    seconds: dict[str, float] = {}
    rates: dict[str, dict[str, float | str]] = {task: {} for task in TASKS}
    for name, method in methods.items():
        started = time.perf_counter()
        table = hit_rates(model, {name: method}, n=options.examples, params=LIGHT)
        seconds[name] = (time.perf_counter() - started) / (options.examples * len(TASKS))
        for task in TASKS:
            rates[task][name] = table[task][name]
            rates[task]["solved"] = table[task]["solved"]
    chance = {}
    for task in TASKS:
        data = make_task(task, options.examples, seed=2_000_000)
        shares = [
            len(positions) / int((content_features(prompt) >= 0).sum())
            for prompt, steps in zip(data.prompts, data.dependencies, strict=True)
            for positions in steps
        ]
        chance[task] = sum(shares) / len(shares)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for task in TASKS:
        data = make_task(task, 1, seed=2_000_000)
        metrics[task] = {}
        for name, method in methods.items():
            if isinstance(rates[task][name], str):
                continue
            exp = explain_generation(
                model,
                data.prompts[0],
                method=method,
                continuation=data.answers[0],
                features=content_features(data.prompts[0]),
                baseline=MASK_ID,
                **(LIGHT.get(name, {}) if isinstance(method, str) else {}),
            )
            metrics[task][name] = {
                "comprehensiveness": comprehensiveness(model, exp).mean,
                "sufficiency": sufficiency(model, exp).mean,
                "soft_comprehensiveness": soft_comprehensiveness(model, exp).mean,
            }
    print(f"hit rates, {options.examples} examples per task (top feature is a true dependency)")
    print(f"{'method':<24}" + "".join(f"{task:>10}" for task in TASKS) + f"{'s/example':>12}")
    print(f"{'(share solved)':<24}" + "".join(f"{rates[task]['solved']:>10.3f}" for task in TASKS))
    print(f"{'(random ranking)':<24}" + "".join(f"{chance[task]:>10.3f}" for task in TASKS))
    for name in methods:
        cells = [rates[task][name] for task in TASKS]
        text = "".join(f"{c:>10.3f}" if isinstance(c, float) else f"{'refused':>10}" for c in cells)
        print(f"{name:<24}{text}{seconds[name]:>12.3f}")
    record = {
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "examples": options.examples,
        "hit_rates": rates,
        "chance": chance,
        "seconds_per_example": seconds,
        "metrics_first_example": metrics,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(record, indent=2))
    print(f"saved {options.out}")


if __name__ == "__main__":
    main()
