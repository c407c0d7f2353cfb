"""DeepLIFT and DeepSHAP time against Captum's DeepLift and DeepLiftShap on the built-in CNN.

Usage: ``python benchmarks/deep_lift.py [--images 32] [--background 8] [--repeats 3]
[--out PATH]``.

The same images (64 x 64 shapes, each explained for its predicted class) are explained by
faithmap and by Captum in the same run, alternating, each timed ``--repeats`` times (best
kept). Captum runs every row in one batch; faithmap runs at a fixed batch size of 32, so the
ratio compares the methods, not faithmap's batch-size measurement. Results are printed and saved
as JSON (default ``benchmarks/results/deep_lift.json``) with the load average: on a shared
machine, rerun when it is above the core count. Ratios above 1 mean faithmap is slower.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import DeepLiftShap as CaptumDeepLiftShap

from faithmap import Model
from faithmap.data import make_shapes
from faithmap.methods.deep_lift import DeepLift
from faithmap.methods.deep_shap import DeepShap
from faithmap.zoo import load_builtin


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--background", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deep_lift.json"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # Captum warns that it sets hooks
    net = load_builtin("cnn")
    images = make_shapes(args.images + args.background, size=64, seed=0).images
    x, background = images[: args.images], images[args.images :]
    with torch.no_grad():
        targets = net(x).argmax(1)
    model = Model(net, batch_size=32)
    zeros = torch.zeros_like(x)
    runs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "deep_lift": (
            lambda: DeepLift().explain(model, x, targets),
            lambda: CaptumDeepLift(net).attribute(x, zeros, target=targets),
        ),
        "deep_shap": (
            lambda: DeepShap(background=background).explain(model, x, targets),
            lambda: CaptumDeepLiftShap(net).attribute(x, background, target=targets),
        ),
    }
    results: dict[str, object] = {
        "images": args.images,
        "background": args.background,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    for name, (ours, captum) in runs.items():
        ours(), captum()  # warm-up
        faithmap_s = best_seconds(ours, args.repeats)
        captum_s = best_seconds(captum, args.repeats)
        results[name] = {
            "faithmap_s": round(faithmap_s, 4),
            "captum_s": round(captum_s, 4),
            "ratio": round(faithmap_s / captum_s, 3),
        }
        print(
            f"{name}: faithmap {faithmap_s:.3f} s, Captum {captum_s:.3f} s, "
            f"ratio {faithmap_s / captum_s:.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
