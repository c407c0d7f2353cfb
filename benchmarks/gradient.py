"""Gradient methods against Captum and against their model-only limit, in one run.

Usage: ``python benchmarks/gradient.py [--images 16] [--threads N] [--out PATH]``.

On the built-in CNN and ``make_shapes`` images, with explicit targets (the predicted classes):
Integrated Gradients (32 Gauss-Legendre steps, zero baseline), SmoothGrad (16 noisy copies of
the signed gradient, noise 0.15 of the [0, 1] range), GradientSHAP (16 draws from a background
of 16 images, no input noise) and Grad-CAM (the last convolution; only when ``grad_cam`` is
registered). Each is timed in faithmap at its defaults (one ``Model``, batch size measured in
the warm-up) and in Captum with the same settings at Captum's defaults and with its batching
tuned by hand: ``internal_batch_size`` for IG, ``nt_samples_batch_size`` for NoiseTunnel, and,
where Captum has no batching parameter (GradientShap, captum#1350; LayerGradCam), calling it
on chunks of images. The limit of a method is, as in ``overhead.py``,

    limit = backward_rows * t_fwd_bwd + (forward_rows - backward_rows) * t_fwd

with faithmap's own row counts and the best per-sample times over batch sizes 1..256. For
Grad-CAM the backward pass stops at the layer, so its limit is an upper bound.

That limit times one batch that stays in cache. A multi-row method must build every row anew
(a noisy copy, a point on a path), so the script also times the *fresh-input limit*: the bare
model looping over the method's backward rows at its best batch size, each batch built by the
cheapest possible step (one gather and one add of precomputed noise), then forward, the target
column and the input gradient. No attribution method can be faster than that loop.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr import GradientShap as CaptumGradientShap
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerGradCam as CaptumLayerGradCam
from captum.attr import NoiseTunnel as CaptumNoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from torch import Tensor, nn

import faithmap
from faithmap.data import make_shapes
from faithmap.methods import GradientShap, IntegratedGradients, Method, NoiseTunnel
from overhead import (
    BATCH_SIZES,
    FORMULA,
    model_curve,
    shipped_cnn_and_environment,
    summary,
    timed,
    tune,
)

SAMPLES = 16
IG_STEPS = 32
STDEV = 0.15


def chunked(
    run: Callable[[Tensor, Tensor], Tensor], images: Tensor, target: Tensor, size: int
) -> Callable[[], Tensor]:
    """Captum batched by hand: ``run`` on consecutive chunks of ``size`` images."""

    def go() -> Tensor:
        parts = [
            run(images[start : start + size], target[start : start + size])
            for start in range(0, images.shape[0], size)
        ]
        return torch.cat(parts)

    return go


def fresh_input_loop(
    net: nn.Module, images: Tensor, target: Tensor, rows: int, batch: int
) -> Callable[[], None]:
    """The bare model over ``rows`` freshly built rows of ``images``: gather, add, fwd, grad."""
    noise = torch.randn(rows, *images.shape[1:], generator=torch.Generator().manual_seed(0))
    source = torch.arange(rows) % images.shape[0]

    def run() -> None:
        for start in range(0, rows, batch):
            index = source[start : start + batch]
            x = (images[index] + 0.1 * noise[start : start + batch]).requires_grad_(True)
            scores = net(x).gather(1, target[index, None]).sum()
            torch.autograd.grad(scores, x)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images explained per call")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curve-seconds", type=float, default=0.4)
    parser.add_argument("--ig-batch-sizes", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--nt-batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--chunk-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gradient.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    net, env = shipped_cnn_and_environment(images=args.images, size=args.size, repeats=args.repeats)
    print(" | ".join(f"{k}={v}" for k, v in env.items()))

    images = make_shapes(args.images, seed=args.seed, size=args.size).images
    background = make_shapes(16, seed=args.seed + 2, size=args.size).images
    with torch.no_grad():
        target = net(images).argmax(1)
    curve_images = make_shapes(64, seed=args.seed + 1, size=args.size).images
    curve = model_curve(net, curve_images, args.curve_seconds)

    methods: dict[str, Method] = {
        "integrated_gradients": IntegratedGradients(steps=IG_STEPS),
        "smoothgrad": NoiseTunnel(n_samples=SAMPLES, stdev=STDEV),
        "gradient_shap": GradientShap(n_samples=SAMPLES, background=background),
    }
    if "grad_cam" in faithmap.METHODS.names():
        methods["grad_cam"] = faithmap.get_method("grad_cam")

    ig, tunnel, shap = (
        CaptumIG(net),
        CaptumNoiseTunnel(CaptumSaliency(net)),
        CaptumGradientShap(net),
    )
    last_conv = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    cam = CaptumLayerGradCam(net, last_conv)

    def captum_cam(x: Tensor, t: Tensor) -> Tensor:
        maps = cam.attribute(x, target=t, relu_attributions=True)
        return F.interpolate(maps, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def captum_shap(x: Tensor, t: Tensor) -> Tensor:
        return shap.attribute(x, baselines=background, n_samples=SAMPLES, target=t)

    chunks = [args.images, *[c for c in args.chunk_sizes if c < args.images]]
    # name -> (Captum run for a batching setting, settings with Captum's default first)
    captum: dict[str, tuple[Callable[[Any], Callable[[], Tensor]], list[Any]]] = {
        "integrated_gradients": (
            lambda b: (
                lambda: ig.attribute(images, target=target, n_steps=IG_STEPS, internal_batch_size=b)
            ),
            [None, *args.ig_batch_sizes],
        ),
        "smoothgrad": (
            lambda b: (
                lambda: tunnel.attribute(
                    images,
                    nt_type="smoothgrad",
                    nt_samples=SAMPLES,
                    nt_samples_batch_size=b,
                    stdevs=STDEV,
                    target=target,
                    abs=False,
                )
            ),
            [None, *[b for b in args.nt_batch_sizes if b < SAMPLES]],
        ),
        "gradient_shap": (lambda c: chunked(captum_shap, images, target, c), chunks),
        "grad_cam": (lambda c: chunked(captum_cam, images, target, c), chunks),
    }
    # faithmap's channel reduction applied to Captum's maps, for the attribution check
    reduce: dict[str, Callable[[Tensor], Tensor]] = {
        "integrated_gradients": lambda a: a.sum(1, keepdim=True),
        "grad_cam": lambda a: a,
    }

    model = faithmap.Model(net)
    rows: dict[str, dict[str, Any]] = {}
    for name, method in methods.items():
        explanations: list[faithmap.Explanation] = []

        def run(m: Method = method, out: list[faithmap.Explanation] = explanations) -> None:
            out.append(m.explain(model, images, target))

        run()  # warm-up and batch-size calibration
        make, settings = captum[name]
        reference = make(settings[0])()
        row: dict[str, Any] = {"config": method.config()}
        if name in reduce:
            diff = (explanations[0].attributions - reduce[name](reference)).abs().max().item()
            row["max_abs_diff_vs_captum"] = diff
        best, row["captum_sweep_s"] = tune(make, settings)
        row["captum_default_setting"], row["captum_tuned_setting"] = settings[0], best
        contenders = {
            "faithmap": run,
            "captum_default": make(settings[0]),
            "captum_tuned": make(best),
        }
        times: dict[str, list[float]] = {key: [] for key in contenders}
        for _ in range(args.repeats):  # interleaved: load changes hit every contender alike
            for key, contender in contenders.items():
                times[key] += timed(contender, 1)
        cost = explanations[-1].cost
        row |= {"forward_rows": cost.forward, "backward_rows": cost.backward}
        row |= {key: summary(values) for key, values in times.items()}
        rows[name] = row
        print(f"{name}: " + ", ".join(f"{k} {row[k]['median_s']:.3f} s" for k in times))

    end_curve = model_curve(net, curve_images, args.curve_seconds)
    for kind in curve:
        for size in BATCH_SIZES:
            curve[kind][size] = min(curve[kind][size], end_curve[kind][size])
    fwd, fwd_bwd = min(curve["forward"].values()), min(curve["forward_backward"].values())
    best_batch = min(curve["forward_backward"], key=lambda size: curve["forward_backward"][size])
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    for row in rows.values():
        if row["backward_rows"] > images.shape[0]:  # multi-row methods only
            loop = fresh_input_loop(net, images, target, row["backward_rows"], best_batch)
            loop()
            row["fresh_input_limit_s"] = min(timed(loop, args.repeats))
            row["faithmap_over_fresh_limit"] = (
                row["faithmap"]["median_s"] / row["fresh_input_limit_s"]
            )
    for p, flag in flags:
        p.requires_grad_(flag)
    for row in rows.values():
        limit = row["backward_rows"] * fwd_bwd + (row["forward_rows"] - row["backward_rows"]) * fwd
        row["limit_s"] = limit
        for key in ("faithmap", "captum_default", "captum_tuned"):
            row[f"{key}_per_image_s"] = row[key]["median_s"] / args.images
            row[f"{key}_over_limit"] = row[key]["median_s"] / limit
            row[f"{key}_over_limit_min"] = row[key]["min_s"] / limit
        for key in ("captum_default", "captum_tuned"):
            row[f"{key}_over_faithmap"] = row[key]["median_s"] / row["faithmap"]["median_s"]
            row[f"{key}_over_faithmap_min"] = row[key]["min_s"] / row["faithmap"]["min_s"]

    print(f"\nbest model-only per sample: fwd {fwd * 1e3:.3f} ms, fwd+bwd {fwd_bwd * 1e3:.3f} ms")
    print(FORMULA)
    header = ("method", "rows f/b", "fm ms/img", "fm/lim", "cap.def/lim", "def/fm", "cap.tun/lim")
    header += ("setting", "tuned/fm", "fm/fresh", "max|Δ|")
    print("\n" + " ".join(f"{h:>12}" for h in header))
    for name, r in rows.items():
        cells = [
            name[:12],
            f"{r['forward_rows']}/{r['backward_rows']}",
            f"{r['faithmap_per_image_s'] * 1e3:.2f}",
            f"{r['faithmap_over_limit']:.2f}",
            f"{r['captum_default_over_limit']:.2f}",
            f"{r['captum_default_over_faithmap']:.2f}",
            f"{r['captum_tuned_over_limit']:.2f}",
            str(r["captum_tuned_setting"]),
            f"{r['captum_tuned_over_faithmap']:.2f}",
            f"{r['faithmap_over_fresh_limit']:.2f}" if "fresh_input_limit_s" in r else "-",
            f"{r['max_abs_diff_vs_captum']:.1e}" if "max_abs_diff_vs_captum" in r else "-",
        ]
        print(" ".join(f"{c:>12}" for c in cells))
    print("fm/lim: faithmap wall / limit (target <= 1.10); def/fm: Captum at its defaults over")
    print("faithmap (target >= 1.5 for IG, SmoothGrad, GradientSHAP); tuned/fm: Captum tuned by")
    print("hand over faithmap (target >= 1.0). setting: Captum's fastest batching (IG")
    print("internal_batch_size, NoiseTunnel nt_samples_batch_size, else images per call).")
    print("fm/fresh: faithmap wall / the bare model's loop over the same fresh rows.")
    print(f"Medians of {args.repeats} interleaved repeats; ratios from the minima are in the JSON.")

    env["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "env": env,
        "formula": FORMULA,
        "best_fwd_s": fwd,
        "best_fwd_bwd_s": fwd_bwd,
        "curve_s_per_sample": curve,
        "calibration": {str(k): v for k, v in model.measured_batch_sizes.items()},
        "methods": rows,
    }
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
