"""The batch-size calibration's share of a small job, in a first and a second process.

Usage: ``python benchmarks/calibration_share.py [--images 4] [--threads N] [--resnet-masks 50]
[--models cnn resnet18] [--out PATH]``.

A job is one ``faithmap.explain`` call on ``--images`` images: Integrated Gradients (32 steps, its
defaults) and RISE (2,000 masks on the CNN; ``--resnet-masks`` on the ResNet, whose forward pass
is ~100x dearer). The models: the built-in CNN (``load_builtin("cnn")``, 64×64) and a
ResNet-18-size model built from ``transformers``' ``ResNetConfig`` (random weights, 11.7 M
parameters, 224×224), wrapped to return the logits tensor. Every job runs in a FIRST process
whose batch-size cache is empty (a temporary ``FAITHMAP_CACHE_DIR``) and then in a SECOND
process sharing that folder. For each job the script reports

    share = Cost.calibration_seconds / Cost.seconds

(time spent measuring the batch size ÷ the job's own time, which leaves calibration out).
Targets: share <= 0.25 in the first process, <= 0.05 in the second. Ratios, not seconds, are
the result: the machine's load moves both terms. Prints a table and saves JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIRST_TARGET, SECOND_TARGET = 0.25, 0.05


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(name: str) -> tuple[Any, Any]:
    """The model and ``--images``-free input shape ``(C, H, W)`` of a named benchmark model."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "cnn":
        import faithmap
        from faithmap.zoo import architecture, load_builtin

        try:
            net = load_builtin("cnn")
        except faithmap.FaithmapError:
            net = architecture("cnn").eval()
        return net, (3, 64, 64)
    if name == "resnet18":
        from transformers import ResNetConfig, ResNetForImageClassification

        config = ResNetConfig(
            layer_type="basic",
            depths=[2, 2, 2, 2],
            hidden_sizes=[64, 128, 256, 512],
            num_labels=1000,
        )

        class Logits(nn.Module):
            """The Hugging Face model, returning its logits tensor."""

            def __init__(self) -> None:
                super().__init__()
                self.net = ResNetForImageClassification(config)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                logits: torch.Tensor = self.net(pixel_values=x).logits
                return logits

        return Logits().eval(), (3, 224, 224)
    raise SystemExit(f"unknown model {name!r}; use cnn or resnet18")


def child(args: argparse.Namespace) -> None:
    """Run every job once in this process and print one JSON line with the costs."""
    import torch

    import faithmap

    torch.set_num_threads(args.threads)
    records = []
    for name in args.models:
        net, shape = build(name)
        x = torch.rand(args.images, *shape, generator=torch.Generator().manual_seed(1))
        jobs: dict[str, dict[str, Any]] = {
            "integrated_gradients": {},
            "rise": {"n_masks": args.resnet_masks} if name == "resnet18" else {},
        }
        for method, params in jobs.items():
            started = time.perf_counter()
            explanation = faithmap.explain(net, x, method=method, **params)
            wall = time.perf_counter() - started
            cost = explanation.cost
            records.append(
                {
                    "model": name,
                    "method": method,
                    "params": params,
                    "forward_rows": cost.forward,
                    "backward_rows": cost.backward,
                    "job_s": cost.seconds,
                    "calibration_s": cost.calibration_seconds,
                    "wall_s": wall,
                    "share": cost.calibration_seconds / cost.seconds,
                    "batch_sizes": {
                        str(k): v for k, v in faithmap.Model(net).measured_batch_sizes.items()
                    },
                }
            )
    print(json.dumps(records))


def run_process(args: argparse.Namespace, cache: Path) -> list[dict[str, Any]]:
    """One child process with ``FAITHMAP_CACHE_DIR=cache``; its records."""
    command = [sys.executable, __file__, "--child", "--images", str(args.images)]
    command += ["--threads", str(args.threads), "--resnet-masks", str(args.resnet_masks)]
    command += ["--models", *args.models]
    env = {**os.environ, "FAITHMAP_CACHE_DIR": str(cache)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the child process failed:\n{done.stderr}")
    records: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images explained per job")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--resnet-masks", type=int, default=50, help="RISE masks on the ResNet")
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet18"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/calibration_share.json")
    )
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import torch

    env = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "images": args.images,
        "resnet_masks": args.resnet_masks,
        "load_avg_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="faithmap-cache-") as folder:
        cache = Path(folder)
        first = run_process(args, cache)
        second = run_process(args, cache)
        cache_bytes = (cache / "batch_sizes.json").stat().st_size
    env["load_avg_end"] = os.getloadavg()

    header = ("model", "method", "rows f/b", "job s", "1st cal s", "1st share", "2nd cal s")
    header += ("2nd share",)
    print(" ".join(f"{h:>11}" for h in header))
    rows = []
    for a, b in zip(first, second, strict=True):
        row = {
            "model": a["model"],
            "method": a["method"],
            "first": a,
            "second": b,
            "first_share": a["share"],
            "second_share": b["share"],
            "first_within_target": a["share"] <= FIRST_TARGET,
            "second_within_target": b["share"] <= SECOND_TARGET,
        }
        rows.append(row)
        cells = (
            a["model"],
            a["method"][:11],
            f"{a['forward_rows']}/{a['backward_rows']}",
            f"{a['job_s']:.2f}",
            f"{a['calibration_s']:.3f}",
            f"{a['share']:.3f}",
            f"{b['calibration_s']:.3f}",
            f"{b['share']:.3f}",
        )
        print(" ".join(f"{c:>11}" for c in cells))
    print(
        f"share = calibration s / job s (job s leaves calibration out); targets: first process "
        f"<= {FIRST_TARGET}, second (cache filled) <= {SECOND_TARGET}. Cache file: "
        f"{cache_bytes} bytes. Load average {env['load_avg_start']} -> {env['load_avg_end']}."
    )
    record = {"env": env, "targets": {"first": FIRST_TARGET, "second": SECOND_TARGET}}
    record["jobs"] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
