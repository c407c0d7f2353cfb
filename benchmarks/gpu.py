"""faithmap on a GPU: a ResNet-50-size model at 224 x 224, fp32 against bf16, against Captum.

Usage: ``python benchmarks/gpu.py [--device cuda] [--images 8] [--precision fp32 bf16]
[--out PATH]``; a CPU smoke run: ``python benchmarks/gpu.py --device cpu --images 1 --size 64
--depths 1 1 1 1 --hidden-sizes 16 32 64 128 --ig-steps 4 --rise-masks 32
--kernel-shap-samples 32 --lima-regions slic:16 --repeats 1 --curve-seconds 0.01
--max-batch 16 --out /tmp/gpu.json`` (CPU bf16 autocast is ~10x slower than fp32 there).

The model is ``transformers``' ``ResNetForImageClassification`` with ResNet-50's layout (depths
3, 4, 6, 3; widths 256, 512, 1024, 2048; bottleneck blocks; 1000 classes) and random weights,
returning its logits through :class:`~faithmap.zoo.libraries.HuggingFaceLogits`. Inputs are
``make_shapes`` images at ``--size``, with explicit targets (the fp32 model's predicted classes)
for every contender, so no pass goes to resolving them.

For each precision (``Model(net, device=..., precision=...)``; Captum gets the same network
under the same ``torch.autocast``, its outputs cast to fp32) it times Integrated Gradients,
Occlusion, RISE, FeatureAblation and KernelSHAP (SLIC regions shared with Captum's
``feature_mask``), LiMA (its default ``slic:49``; with its bidirectional search and with
``search="additive"``) and the insertion and deletion metrics of
the IG maps, each against its model-only limit,

    limit = backward_rows * t_fwd_bwd + (forward_rows - backward_rows) * t_fwd,

where ``t_fwd`` and ``t_fwd_bwd`` are the best per-sample times of the bare network's forward
pass and forward + input-gradient pass over batch sizes 1, 2, 4, ... (up to ``--max-batch`` or
the first out-of-memory), and the row counts are faithmap's own ``cost``. Captum runs at its
defaults (``internal_batch_size=None``, ``perturbations_per_eval=1``) and tuned (the fastest
setting of a sweep). faithmap, Captum-default and Captum-tuned are timed interleaved,
``--repeats`` rounds, ``torch.cuda.synchronize`` before and after every timed call on CUDA,
with the peak GPU memory of each call. The goal line: LiMA under 0.5 s per image at 49 regions.
Last, per precision, faithmap's forward, IG and occlusion in ``memory_format="contiguous"``
against ``"channels_last"`` (:func:`channels_last.format_comparison`; ``--without-formats``
skips it), printed as ``contiguous / channels_last`` time (above 1: channels_last faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from captum.attr import FeatureAblation as CaptumAblation
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import KernelShap as CaptumKernelShap
from captum.attr import Occlusion as CaptumOcclusion
from torch import Tensor, nn
from transformers import ResNetConfig, ResNetForImageClassification

import faithmap
from channels_last import format_comparison, synchronize
from faithmap.core.regions import make_regions
from faithmap.data import make_shapes
from faithmap.methods import (
    FeatureAblation,
    IntegratedGradients,
    KernelShap,
    Lima,
    Method,
    Occlusion,
    Rise,
)
from faithmap.metrics import deletion, insertion
from faithmap.zoo.libraries import HuggingFaceLogits
from overhead import cpu_model

FORMULA = (
    "limit = backward_rows * best_fwd_bwd_per_sample "
    "+ (forward_rows - backward_rows) * best_fwd_per_sample"
)
LIMA_GOAL_S = 0.5
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Autocast(nn.Module):
    """``net`` under ``torch.autocast`` with its outputs cast to fp32: Captum's bf16 model."""

    def __init__(self, net: nn.Module, precision: str, device: torch.device) -> None:
        super().__init__()
        self.net, self.precision, self.kind = net, precision, device.type

    def forward(self, inputs: Tensor) -> Tensor:
        if self.precision == "fp32":
            outputs: Tensor = self.net(inputs)
            return outputs
        with torch.autocast(self.kind, dtype=DTYPES[self.precision]):
            outputs = self.net(inputs)
        return outputs.float()


def resnet(depths: list[int], hidden_sizes: list[int]) -> nn.Module:
    """A random-weight ``ResNetForImageClassification`` (ResNet-50 at the defaults), logits out."""
    config = ResNetConfig(
        depths=depths,
        hidden_sizes=hidden_sizes,
        layer_type="bottleneck",
        embedding_size=64,
    )
    config.num_labels = 1000  # ImageNet's head
    torch.manual_seed(0)
    return HuggingFaceLogits(ResNetForImageClassification(config)).eval()


def timed_call(run: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """Wall seconds of one call of ``run`` (synchronised on CUDA) and its peak GPU MiB."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, peak


def out_of_memory(run: Callable[[], object], device: torch.device) -> bool:
    """Run once; ``True`` (memory freed) when it ran out of memory."""
    try:
        run()
    except torch.OutOfMemoryError:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return True
    return False


def model_curve(
    net: nn.Module, images: Tensor, args: argparse.Namespace
) -> dict[str, dict[int, float]]:
    """Best seconds per sample of the bare network's forward and forward + input-gradient pass
    per batch size, up to ``--max-batch`` or the first size that runs out of memory."""
    device = images.device

    def forward(batch: Tensor) -> None:
        with torch.inference_mode():
            net(batch)

    def forward_backward(batch: Tensor) -> None:
        rows = batch.detach().requires_grad_(True)
        torch.autograd.grad(net(rows)[:, 0].sum(), rows)

    curve: dict[str, dict[int, float]] = {"forward": {}, "forward_backward": {}}
    for name, step in (("forward", forward), ("forward_backward", forward_backward)):
        size = 1
        while size <= args.max_batch:
            batch = images[torch.arange(size, device=device) % images.shape[0]].contiguous()
            call = partial(step, batch)
            if out_of_memory(call, device):  # also the warm-up
                break
            once = timed_call(call, device)[0]
            repeats = max(3, int(args.curve_seconds / max(once, 1e-6)))
            best = min(timed_call(call, device)[0] for _ in range(repeats))
            curve[name][size] = best / size
            size *= 2
    return curve


def tune(
    make: Callable[[Any], Callable[[], object]], settings: list[Any], device: torch.device
) -> tuple[Any, dict[str, float | str]]:
    """Captum's fastest batching setting of ``settings``: each timed once after a warm-up."""
    once: dict[Any, float] = {}
    sweep: dict[str, float | str] = {}
    for setting in settings:
        run = make(setting)
        if out_of_memory(run, device):
            sweep[str(setting)] = "out of memory"
            continue
        once[setting] = sweep[str(setting)] = timed_call(run, device)[0]
    return min(once, key=lambda k: once[k]) if once else None, sweep


def compare(
    contenders: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, dict[str, Any]]:
    """Interleaved timings (a change in load hits every contender alike) and peak memory."""
    runs: dict[str, list[float]] = {key: [] for key in contenders}
    peaks: dict[str, list[float]] = {key: [] for key in contenders}
    for _ in range(repeats):
        for key, run in contenders.items():
            seconds, peak = timed_call(run, device)
            runs[key].append(seconds)
            if peak is not None:
                peaks[key].append(peak)
    return {
        key: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "all_s": values,
            "peak_mib": max(peaks[key]) if peaks[key] else None,
        }
        for key, values in runs.items()
    }


def precision_section(
    net: nn.Module,
    images: Tensor,
    target: Tensor,
    labels: Tensor,
    precision: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Every contender at one precision: timings, ratios to the limit and to Captum."""
    device = images.device
    captum_net = Autocast(net, precision, device)
    curve = model_curve(captum_net, images, args)
    fwd, fwd_bwd = min(curve["forward"].values()), min(curve["forward_backward"].values())
    print(
        f"[{precision}] model-only best per sample: fwd {fwd * 1e3:.3f} ms, "
        f"fwd+bwd {fwd_bwd * 1e3:.3f} ms"
    )

    model = faithmap.Model(net, device=device, precision=precision)  # type: ignore[arg-type]
    occlusion = Occlusion().resolve(images)
    window, stride = occlusion.window, occlusion.stride
    assert isinstance(window, int) and isinstance(stride, int)  # square images: one side each
    channels = images.shape[1]
    feature_mask = labels.unsqueeze(1).expand_as(images)
    methods: dict[str, Method] = {
        "integrated_gradients": IntegratedGradients(steps=args.ig_steps),
        "occlusion": occlusion,
        "rise": Rise(n_masks=args.rise_masks),
        "feature_ablation": FeatureAblation(regions=labels),
        "kernel_shap": KernelShap(regions=labels, n_samples=args.kernel_shap_samples, exact=False),
        "lima": Lima(regions=args.lima_regions),
        "lima_additive": Lima(regions=args.lima_regions, search="additive"),
    }
    ig, occ = CaptumIG(captum_net), CaptumOcclusion(captum_net)
    ablation, shap = CaptumAblation(captum_net), CaptumKernelShap(captum_net)
    per_eval = [1, *[p for p in args.per_eval if p != 1]]
    region_kw = {"baselines": 0.0, "target": target, "feature_mask": feature_mask}
    # name -> (Captum run for a batching setting, settings with Captum's default first)
    captum: dict[str, tuple[Callable[[Any], Callable[[], object]], list[Any]]] = {
        "integrated_gradients": (
            lambda b: (
                lambda: ig.attribute(
                    images, target=target, n_steps=args.ig_steps, internal_batch_size=b
                )
            ),
            [None, *args.ig_batch_sizes],
        ),
        "occlusion": (
            lambda p: (
                lambda: occ.attribute(
                    images,
                    sliding_window_shapes=(channels, window, window),
                    strides=(channels, stride, stride),
                    baselines=0.0,
                    target=target,
                    perturbations_per_eval=p,
                )
            ),
            per_eval,
        ),
        "feature_ablation": (
            lambda p: lambda: ablation.attribute(images, perturbations_per_eval=p, **region_kw),
            per_eval,
        ),
        "kernel_shap": (
            lambda p: (
                lambda: shap.attribute(
                    images,
                    n_samples=args.kernel_shap_samples,
                    perturbations_per_eval=p,
                    **region_kw,
                )
            ),
            per_eval,
        ),
    }
    rows: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    explanations: dict[str, faithmap.Explanation] = {}

    def measure(
        name: str, contenders: dict[str, Callable[[], object]], row: dict[str, Any]
    ) -> None:
        row |= compare(contenders, args.repeats, device)
        limit = row["backward_rows"] * fwd_bwd + (row["forward_rows"] - row["backward_rows"]) * fwd
        row["limit_s"] = limit
        for key in contenders:
            row[f"{key}_per_image_s"] = row[key]["median_s"] / images.shape[0]
            row[f"{key}_over_limit"] = row[key]["median_s"] / limit
            if key != "faithmap":
                row[f"{key}_over_faithmap"] = row[key]["median_s"] / row["faithmap"]["median_s"]
        rows[name] = row
        print(
            f"[{precision}] {name}: "
            + ", ".join(f"{k} {row[k]['median_s']:.3f} s" for k in contenders)
        )

    def method_row(name: str, method: Method) -> None:
        def run(m: Method = method, key: str = name) -> None:
            explanations[key] = m.explain(model, images, target)

        run()  # warm-up; the first call of each pass kind calibrates the Model's batch size
        cost = explanations[name].cost
        row: dict[str, Any] = {
            "config": {k: v for k, v in method.config().items() if not isinstance(v, Tensor)},
            "forward_rows": cost.forward,
            "backward_rows": cost.backward,
        }
        contenders: dict[str, Callable[[], object]] = {"faithmap": run}
        if name in captum and not args.without_captum:
            make, settings = captum[name]
            best, row["captum_sweep_s"] = tune(make, settings, device)
            row["captum_default_setting"], row["captum_tuned_setting"] = settings[0], best
            if isinstance(row["captum_sweep_s"].get(str(settings[0])), float):
                contenders["captum_default"] = make(settings[0])
            if isinstance(row["captum_sweep_s"].get(str(best)), float):  # None: all ran out
                contenders["captum_tuned"] = make(best)
        measure(name, contenders, row)

    for name, method in methods.items():
        try:  # one failing contender costs its own row, not the section
            method_row(name, method)
        except Exception as error:  # recorded and printed: the failure is the finding
            failed[name] = f"{type(error).__name__}: {error}"[:500]
            print(f"[{precision}] {name}: failed: {failed[name]}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()

    for name, metric in (("insertion", insertion), ("deletion", deletion)):
        if "integrated_gradients" not in explanations:  # the metrics score its maps
            break
        results: list[Any] = []

        def score(f: Any = metric, out: list[Any] = results) -> None:
            ig_map = explanations["integrated_gradients"]
            out.append(f(model, images, ig_map, target=target, steps=args.metric_steps))

        score()  # warm-up
        row = {"forward_rows": results[0].cost.forward, "backward_rows": 0}
        measure(name, {"faithmap": score}, row)
    return {
        "best_fwd_s": fwd,
        "best_fwd_bwd_s": fwd_bwd,
        "curve_s_per_sample": curve,
        "calibration": {str(k): v for k, v in model.measured_batch_sizes.items()},
        "methods": rows,
        "failed": failed,
    }


def print_table(precision: str, section: dict[str, Any]) -> None:
    """One precision's rows: passes, limit, faithmap per image, ratios, peak memory."""
    header = "method rows_f/b limit_s fm_ms/img fm/lim def/fm tuned/fm setting fm_MiB tuned_MiB"
    print(f"\n[{precision}] " + " ".join(f"{h:>11}" for h in header.split()))
    for name, r in section["methods"].items():

        def cell(key: str, form: str, row: dict[str, Any] = r) -> str:
            return format(row[key], form) if row.get(key) is not None else "-"

        peak = (r.get("captum_tuned") or {}).get("peak_mib")
        cells = [
            name[:11],
            f"{r['forward_rows']}/{r['backward_rows']}",
            f"{r['limit_s']:.3f}",
            f"{r['faithmap_per_image_s'] * 1e3:.1f}",
            f"{r['faithmap_over_limit']:.2f}",
            cell("captum_default_over_faithmap", ".2f"),
            cell("captum_tuned_over_faithmap", ".2f"),
            str(r.get("captum_tuned_setting", "-")),
            f"{r['faithmap']['peak_mib']:.0f}" if r["faithmap"]["peak_mib"] is not None else "-",
            f"{peak:.0f}" if peak is not None else "-",
        ]
        print(" " * (len(precision) + 3) + " ".join(f"{c:>11}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:i or cpu")
    parser.add_argument("--images", type=int, default=8, help="images explained per call")
    parser.add_argument(
        "--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"]
    )
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--depths", type=int, nargs=4, default=[3, 4, 6, 3])
    parser.add_argument("--hidden-sizes", type=int, nargs=4, default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after warm-up")
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--rise-masks", type=int, default=2000)
    parser.add_argument("--kernel-shap-samples", type=int, default=1000)
    parser.add_argument("--regions", default="slic:25", help="FeatureAblation/KernelSHAP regions")
    parser.add_argument("--lima-regions", default="slic:49")
    parser.add_argument("--metric-steps", type=int, default=28)
    parser.add_argument("--ig-batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--per-eval", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--max-batch", type=int, default=512, help="largest limit-curve batch")
    parser.add_argument("--curve-seconds", type=float, default=0.5)
    parser.add_argument("--without-captum", action="store_true")
    parser.add_argument("--without-formats", action="store_true", help="skip channels_last")
    parser.add_argument("--format-batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    net = resnet(args.depths, args.hidden_sizes).to(device)
    for p in net.parameters():
        p.requires_grad_(False)
    env: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "images": args.images,
        "size": args.size,
        "depths": args.depths,
        "hidden_sizes": args.hidden_sizes,
        "parameters": sum(p.numel() for p in net.parameters()),
        "repeats": args.repeats,
        "load_avg_start": os.getloadavg(),
    }
    print(" | ".join(f"{k}={v}" for k, v in env.items()))

    images = make_shapes(args.images, seed=args.seed, size=args.size).images.to(device)
    with torch.no_grad():
        target = net(images).argmax(1)
    labels = make_regions(args.regions, images).labels.to(device)

    sections: dict[str, dict[str, Any]] = {}
    for precision in args.precision:  # saved after each, so a run cut short keeps what it did
        sections[precision] = precision_section(net, images, target, labels, precision, args)
        save(args.out, {"env": env, "formula": FORMULA, "precisions": sections})
    for precision, section in sections.items():
        print_table(precision, section)
    print(FORMULA)
    print("fm/lim: faithmap / its model-only limit; def/fm, tuned/fm: Captum at its defaults and")
    print("tuned (setting: internal_batch_size or perturbations_per_eval) over faithmap (> 1:")
    print(f"faithmap faster). Medians of {args.repeats} interleaved rounds; peak GPU MiB per call.")
    if "fp32" in sections:
        for precision in [p for p in sections if p != "fp32"]:
            speedups = {
                name: sections["fp32"]["methods"][name]["faithmap"]["median_s"]
                / r["faithmap"]["median_s"]
                for name, r in sections[precision]["methods"].items()
                if name in sections["fp32"]["methods"]
            }
            sections[precision]["faithmap_speedup_over_fp32"] = speedups
            print(
                f"faithmap fp32 / {precision} time: "
                + ", ".join(f"{k} {v:.2f}" for k, v in speedups.items())
            )
    for precision, section in sections.items() if not args.without_formats else ():
        formats = format_comparison(
            net,
            images,
            precision=precision,
            device=device,
            batch_size=args.format_batch_size,
            rows=4 * args.format_batch_size,
            ig_steps=args.ig_steps,
            repeats=args.repeats,
        )
        section["memory_format"] = formats
        print(
            f"[{precision}] contiguous / channels_last time: "
            + ", ".join(f"{task} {r['speedup']:.2f}" for task, r in formats.items())
        )
    goal: dict[str, Any] = {
        "seconds_per_image": LIMA_GOAL_S,
        "regions": args.lima_regions,
        "device": env["device"],
    }
    for precision, section in sections.items():
        for name in ("lima", "lima_additive"):
            if name not in section["methods"]:
                print(f"goal: {name} ({precision}): failed, see above")
                continue
            per_image = section["methods"][name]["faithmap_per_image_s"]
            holds = per_image < LIMA_GOAL_S
            goal[f"{name}_{precision}"] = {"per_image_s": per_image, "holds": holds}
            print(
                f"goal: {name} < {LIMA_GOAL_S} s per image at {args.lima_regions} on "
                f"{env['device']} ({precision}): {per_image:.3f} s: {'holds' if holds else 'fails'}"
            )

    env["load_avg_end"] = os.getloadavg()
    save(args.out, {"env": env, "formula": FORMULA, "lima_goal": goal, "precisions": sections})
    print(f"saved {args.out}")


def save(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
