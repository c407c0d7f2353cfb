"""channels_last against contiguous: does NHWC speed faithmap up here?

Usage: ``python benchmarks/channels_last.py [--device cpu] [--precision fp32 bf16]
[--models cnn resnet resnet18] [--repeats 3] [--out PATH]``.

For each model and precision, the same work runs through ``faithmap.Model(net,
memory_format=...)`` in both formats, interleaved, ``--repeats`` timed rounds after a warm-up,
best time kept: the forward pass (``Model.outputs`` on ``--rows`` rows), Integrated Gradients
(``--ig-steps`` steps) and Occlusion (a 4 x 4 grid of windows) on ``--images`` images. The batch
size is fixed (``--batch-size``) so both formats run the same calls; faithmap's time includes
converting the weights to NHWC and back around each call, as a user pays it. Printed: seconds
per call in each format and ``speedup = contiguous / channels_last`` (above 1: channels_last
is faster). Models: the built-in CNN and ResNet at 64 x 64, and ``transformers``'
``ResNetConfig`` ResNet-18 (basic blocks, depths 2-2-2-2, widths 64-512, random weights) at
224 x 224. :func:`format_comparison` is also what ``benchmarks/gpu.py`` runs on a GPU.

References
----------
PyTorch, "(beta) Channels Last Memory Format in PyTorch" (tutorial), 2020.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import faithmap
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin

FORMATS = ("contiguous", "channels_last")


def resnet18() -> nn.Module:
    """ResNet-18's layout from ``transformers``' ``ResNetConfig``, random weights, logits out."""
    from transformers import ResNetConfig, ResNetForImageClassification

    from faithmap.zoo.libraries import HuggingFaceLogits

    config = ResNetConfig(
        depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", num_labels=1000
    )
    torch.manual_seed(0)
    return HuggingFaceLogits(ResNetForImageClassification(config).eval())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(
    runs: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Best seconds of each run, the runs interleaved (one warm-up round first)."""
    best = dict.fromkeys(runs, float("inf"))
    for round_ in range(repeats + 1):
        for name, run in runs.items():
            synchronize(device)
            start = time.perf_counter()
            run()
            synchronize(device)
            if round_ > 0:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def format_comparison(
    net: nn.Module,
    images: Tensor,
    *,
    precision: str,
    device: torch.device,
    batch_size: int,
    rows: int,
    ig_steps: int,
    repeats: int,
) -> dict[str, Any]:
    """Forward, IG and occlusion seconds in each memory format, and contiguous / channels_last."""
    target = faithmap.Model(net, batch_size=batch_size, device=device).predict(images)
    side = images.shape[-1] // 4
    work: dict[str, Callable[[faithmap.Model], object]] = {
        "forward": lambda m: m.outputs(images[:1].expand(rows, -1, -1, -1)),
        "integrated_gradients": lambda m: faithmap.explain(
            m, images, method="integrated_gradients", target=target, steps=ig_steps
        ),
        "occlusion": lambda m: faithmap.explain(
            m, images, method="occlusion", target=target, window=side, stride=side
        ),
    }
    results: dict[str, Any] = {}
    for task, call in work.items():
        models = {
            fmt: faithmap.Model(
                net,
                batch_size=batch_size,
                precision=precision,  # type: ignore[arg-type]
                memory_format=fmt,  # type: ignore[arg-type]
            )
            for fmt in FORMATS
        }
        runs = {fmt: partial(call, model) for fmt, model in models.items()}
        seconds = _best_seconds(runs, repeats, device)
        speedup = seconds["contiguous"] / seconds["channels_last"]
        results[task] = {**{f"{f}_s": s for f, s in seconds.items()}, "speedup": speedup}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet", "resnet18"])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rows", type=int, default=64, help="rows of the forward-pass timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ig-steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/channels_last.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    table: dict[str, Any] = {}
    for name in args.models:
        net = (resnet18() if name == "resnet18" else load_builtin(name)).to(device)
        side = 224 if name == "resnet18" else 64
        images = make_shapes(args.images, seed=0, size=side).images.to(device)
        for precision in args.precision:
            rows = format_comparison(
                net,
                images,
                precision=precision,
                device=device,
                batch_size=args.batch_size,
                rows=args.rows,
                ig_steps=args.ig_steps,
                repeats=args.repeats,
            )
            table[f"{name}/{precision}"] = rows
            for task, r in rows.items():
                print(
                    f"{name:9s} {precision:5s} {task:21s} contiguous {r['contiguous_s']:.3f} s  "
                    f"channels_last {r['channels_last_s']:.3f} s  speedup {r['speedup']:.2f}x",
                    flush=True,
                )
    env = {
        "torch": torch.__version__,
        "device": str(device),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": env, "results": table}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
