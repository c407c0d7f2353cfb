"""faithmap on CUDA: every registered method and metric on the built-in models, against the CPU.

Usage: ``python benchmarks/cuda_check.py [--device cuda] [--models cnn resnet vit]
[--methods NAME ...] [--images 2] [--out PATH]``; on a machine without CUDA, ``--device cpu``
runs the same checks with the CPU as both sides (a smoke run of the script).

Three checks, in this order, each printed and saved as JSON as it ends:

1. **Host copies** (CUDA only). With the PyTorch profiler (CUDA activity), the count of
   host-to-device and device-to-host copies while a sampling method runs at a budget and at
   twice that budget, and while insertion and deletion run at 8 and 16 steps. Equal counts:
   nothing is copied once per perturbation, sample or batch (``tests/test_device_transfers.py``
   checks the device-to-host half on the CPU).
2. **Metrics.** Every registered metric scores the CPU's Integrated Gradients map of the CNN
   on the CPU and on the device; the largest absolute difference of the scores (random
   metrics differ by their draws, see 3).
3. **Methods.** Every registered method (or those of ``--methods``) explains ``--images``
   shapes images of each built-in model with its defaults: on the CPU in fp32 (the
   reference), on the device in fp32 and in bf16. Each run ends ``ok``, ``refused`` (a
   :class:`~faithmap.FaithmapError`, which must be the CPU's outcome too) or ``error`` (any
   other exception: a defect). For runs that end ``ok`` it records the seconds, whether the
   map came back fp32 on the input's device, the smallest per-image Spearman correlation with
   the CPU map, and the largest difference of insertion AUC (16 steps, the device's
   explanation scored on the CPU as it came back; ``auc_outcome`` if that fails) from the
   CPU map's. Random methods draw their masks from the device's generator, so their CPU and
   CUDA maps differ by sampling noise: the AUC difference is the figure to read.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from scipy.stats import spearmanr
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

import faithmap
from channels_last import synchronize
from faithmap import Model
from faithmap.data import make_shapes
from faithmap.errors import FaithmapError
from faithmap.evaluation import evaluate
from faithmap.zoo import BUILTIN_MODELS, load_builtin

BUDGETS: dict[str, tuple[str, int]] = {
    "rise": ("n_masks", 256),
    "kernel_shap": ("n_samples", 128),
    "lime": ("n_samples", 128),
    "integrated_gradients": ("steps", 16),
    "smoothgrad": ("n_samples", 8),
}
"""Sampling methods and a budget (doubled in the host-copy check)."""


def attempt(run: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """``run()``'s outcome: ``ok`` with its value and seconds, ``refused`` or ``error``."""
    synchronize(device)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = run()
        synchronize(device)
    except FaithmapError as error:
        return {"outcome": "refused", "message": str(error)[:300]}
    except Exception as error:  # any other exception is the defect looked for
        return {
            "outcome": "error",
            "message": f"{type(error).__name__}: {error}"[:300],
            "where": traceback.format_exc(limit=-3)[-600:],
        }
    return {"outcome": "ok", "seconds": time.perf_counter() - start, "value": value}


def rank_agreement(a: Tensor, b: Tensor) -> float:
    """The smallest per-image Spearman correlation of two batches of maps."""
    rhos = []
    for x, y in zip(a.flatten(1).double(), b.flatten(1).double(), strict=True):
        rho = float(spearmanr(x.numpy(), y.numpy()).statistic)
        rhos.append(1.0 if x.std() == 0 and y.std() == 0 else rho)
    return min(rhos)


def method_rows(
    name: str, net: torch.nn.Module, images: Tensor, device: torch.device
) -> dict[str, Any]:
    """One method on one model: CPU fp32 against the device in fp32 and bf16."""
    scorer = Model(net, batch_size=64)
    runs: dict[str, dict[str, Any]] = {}
    for key, where, precision in (
        ("cpu", "cpu", "fp32"),
        ("fp32", device, "fp32"),
        ("bf16", device, "bf16"),
    ):
        model = Model(net, device=where, precision=precision)  # type: ignore[arg-type]
        inputs = images.to(where)
        runs[key] = attempt(lambda m=model, x=inputs: faithmap.explain(m, x, method=name), device)
    net.cpu()
    reference = runs["cpu"].pop("value", None)
    row: dict[str, Any] = {"cpu": runs["cpu"]}
    auc = None
    if reference is not None:
        auc = faithmap.metrics.insertion(scorer, images, reference, steps=16).auc
    for key in ("fp32", "bf16"):
        run = runs[key]
        explanation = run.pop("value", None)
        if explanation is not None:
            maps = explanation.attributions
            run["on_input_device"] = maps.device.type == device.type
            run["fp32"] = maps.dtype == torch.float32
            if reference is not None and maps.shape == reference.attributions.shape:
                cpu_maps = maps.detach().float().cpu()
                run["rho"] = rank_agreement(reference.attributions.detach().float(), cpu_maps)
                # the device's explanation scored on the CPU, as a user may score it elsewhere
                scored = attempt(
                    lambda e=explanation: faithmap.metrics.insertion(scorer, images, e, steps=16),
                    device,
                )
                if scored["outcome"] == "ok":
                    other = scored["value"].auc
                    run["auc_difference"] = float((other - auc).abs().max())  # type: ignore[operator]
                else:
                    run["auc_outcome"] = {k: v for k, v in scored.items() if k != "value"}
        row[key] = run
    return row


def metric_rows(images: Tensor, masks: Tensor, device: torch.device) -> dict[str, Any]:
    """Every metric on the CNN's Integrated Gradients map, on the CPU and on the device."""
    net = load_builtin("cnn")
    explanation = faithmap.explain(Model(net), images, method="integrated_gradients")
    rows: dict[str, Any] = {}
    for name in sorted(faithmap.METRICS):
        scores = {}
        for key, where in (("cpu", torch.device("cpu")), ("device", device)):
            model = Model(net, device=where)
            scores[key] = attempt(
                lambda m=model, w=where, n=name: evaluate(
                    m,
                    images.to(w),
                    {"ig": explanation},
                    metrics=[n],
                    masks=masks.to(w),
                    params={"relative_representation_stability": {"layer": "block2"}},
                ),
                device,
            )
        net.cpu()
        cpu, dev = scores["cpu"], scores["device"]
        row = {"cpu": cpu["outcome"], "device": dev["outcome"]}
        if cpu["outcome"] == dev["outcome"] == "ok":
            a, b = cpu.pop("value"), dev.pop("value")
            row["max_abs_difference"] = float((a["value"] - b["value"]).abs().max())
            row["device_seconds"] = dev["seconds"]
        else:
            row["messages"] = {k: v.get("message") for k, v in scores.items() if "message" in v}
        rows[name] = row
    return rows


def copies(run: Callable[[], object]) -> dict[str, int]:
    """Host-to-device and device-to-host copies the profiler saw during ``run()``."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize()
    counts = {"host_to_device": 0, "device_to_host": 0}
    for event in prof.events():
        if event.name.startswith("Memcpy HtoD"):
            counts["host_to_device"] += 1
        elif event.name.startswith("Memcpy DtoH"):
            counts["device_to_host"] += 1
    return counts


def copy_rows(images: Tensor, device: torch.device) -> dict[str, Any]:
    """Copies at a budget and at twice it (sampling methods), at 8 and 16 steps (curves)."""
    net = load_builtin("cnn")
    model = Model(net, device=device, batch_size=32)  # several batches at every budget
    inputs = images.to(device)
    rows: dict[str, Any] = {}
    for name, (parameter, budget) in BUDGETS.items():
        faithmap.explain(model, inputs, method=name, **{parameter: budget})  # warm-up
        rows[name] = {
            str(b): copies(
                lambda b=b, n=name, p=parameter: faithmap.explain(model, inputs, method=n, **{p: b})
            )
            for b in (budget, 2 * budget)
        }
    explanation = faithmap.explain(model, inputs, method="saliency")
    for metric in ("insertion", "deletion"):
        rows[metric] = {
            str(steps): copies(
                lambda s=steps, m=metric: evaluate(
                    model, inputs, explanation, metrics=[m], params={m: {"steps": s}}
                )
            )
            for steps in (8, 16)
        }
    net.cpu()
    return rows


def print_method_row(model_name: str, name: str, row: dict[str, Any]) -> None:
    cells = [model_name, name, row["cpu"]["outcome"]]
    for key in ("fp32", "bf16"):
        run = row[key]
        cells += [
            run["outcome"],
            f"{run.get('rho', float('nan')):.3f}",
            f"{run.get('auc_difference', float('nan')):.3f}",
        ]
    cells += [
        f"{row['fp32'].get('seconds', float('nan')):.2f}",
        f"{row['cpu'].get('seconds', float('nan')):.2f}",
    ]
    widths = (7, 22, 8, 8, 6, 6, 8, 6, 6, 7, 7)
    print(" ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)), flush=True)


def disagreements(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Runs whose outcome differs between the CPU and the device, that raised an error, or
    whose explanation could not be scored on the CPU."""
    sides = ("cpu", "fp32", "bf16")
    return {
        key: {
            side: row[side].get("message") or row[side]["auc_outcome"].get("message")
            for side in sides
            if row[side]["outcome"] != "ok" or "auc_outcome" in row[side]
        }
        for key, row in methods.items()
        if len({row[side]["outcome"] for side in sides}) > 1
        or any(row[side]["outcome"] == "error" or "auc_outcome" in row[side] for side in sides)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", nargs="+", default=list(BUILTIN_MODELS))
    parser.add_argument("--methods", nargs="+", help="default: every registered method")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cuda_check.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = make_shapes(args.images, seed=0)
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "images": list(batch.images.shape),
    }
    print(env, flush=True)
    record: dict[str, Any] = {"env": env, "copies": {}, "metrics": {}, "methods": {}}

    def save() -> None:  # after each part, so a run cut short keeps what it did
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2, default=str))

    if device.type == "cuda":
        counted = attempt(lambda: copy_rows(batch.images, device), device)
        record["copies"] = counted.pop("value", counted)  # the error, if one stopped it
        for name, row in record["copies"].items():
            print(f"copies {name:>22}: {row}", flush=True)
        save()
    record["metrics"] = metric_rows(batch.images, batch.masks, device)
    for name, row in record["metrics"].items():
        print(
            f"metric {name:>36}: cpu {row['cpu']:>7}, device {row['device']:>7}, "
            f"max |diff| {row.get('max_abs_difference', float('nan')):.2e}"
            + (f" {row['messages']}" if "messages" in row else ""),
            flush=True,
        )
    save()
    print(
        f"{'model':>7} {'method':>22} {'cpu':>8} {'fp32':>8} {'rho':>6} {'dAUC':>6} "
        f"{'bf16':>8} {'rho':>6} {'dAUC':>6} {'s_fp32':>7} {'s_cpu':>7}"
    )
    for model_name in args.models:
        net = load_builtin(model_name)
        for name in args.methods or faithmap.METHODS.names():
            row = method_rows(name, net, batch.images, device)
            record["methods"][f"{model_name}/{name}"] = row
            print_method_row(model_name, name, row)
            record["method_disagreements"] = disagreements(record["methods"])
            save()
    print(
        "outcomes that differ between CPU and device, or errors:",
        json.dumps(record.get("method_disagreements"), indent=1),
    )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
