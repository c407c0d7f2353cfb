"""faithmap's overhead over the model-only limit, and its speed against Captum, in one run.

Usage: ``python benchmarks/overhead.py [--images 16] [--threads N] [--out PATH]``.

The limit of a method is what its model passes alone cost at the model's best batch size:

    limit = backward_rows * t_fwd_bwd + (forward_rows - backward_rows) * t_fwd

where a gradient row is one forward and one backward pass, ``t_fwd`` and ``t_fwd_bwd`` are the
best per-sample times over batch sizes 1, 2, 4, ..., 256, and the row counts are faithmap's own
``Explanation.cost``. Every explainer gets the same inputs and explicit targets (the predicted
classes), so no pass is spent resolving the target. Prints ratios and saves everything as JSON.

That limit re-feeds one batch that stays in the CPU's cache. A perturbation method cannot: every
perturbed batch must be written to memory and read by the model. So forward-only methods are
also compared with a *fresh-input limit*: the best per-sample time of the cheapest possible
perturbation loop, one ``lerp`` of a new random mask onto the image followed by the forward pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import Occlusion as CaptumOcclusion
from captum.attr import Saliency as CaptumSaliency
from torch import Tensor, nn

import faithmap
from faithmap.data import make_shapes
from faithmap.methods import IntegratedGradients, Method, Occlusion, Rise, Saliency
from faithmap.zoo import architecture, load_builtin

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
FORMULA = (
    "limit = backward_rows * best_fwd_bwd_per_sample "
    "+ (forward_rows - backward_rows) * best_fwd_per_sample"
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def shipped_cnn_and_environment(**extra: object) -> tuple[nn.Module, dict[str, Any]]:
    """The built-in CNN (random init if its weights are missing) and the run's environment.

    Call after ``torch.set_num_threads``; ``extra`` (images, repeats, ...) joins the record.
    """
    try:
        net, weights = load_builtin("cnn"), "shipped"
    except faithmap.FaithmapError:
        net, weights = architecture("cnn").eval(), "random init (shipped weights missing)"
    env: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "weights": weights,
        **extra,
        "load_avg_start": os.getloadavg(),
    }
    return net, env


def timed(run: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def model_curve(net: nn.Module, images: Tensor, min_seconds: float) -> dict[str, dict[int, float]]:
    """Best seconds per sample of a forward and of a forward+input-gradient pass per batch size."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)

    def forward(batch: Tensor) -> None:
        with torch.inference_mode():
            net(batch)

    def forward_backward(batch: Tensor) -> None:
        rows = batch.detach().requires_grad_(True)
        torch.autograd.grad(net(rows)[:, 0].sum(), rows)

    curve: dict[str, dict[int, float]] = {"forward": {}, "forward_backward": {}}
    try:
        for size in BATCH_SIZES:
            batch = images[torch.arange(size) % images.shape[0]].contiguous()
            for name, run in (("forward", forward), ("forward_backward", forward_backward)):
                run(batch)
                once = min(timed(partial(run, batch), 2))
                repeats = max(3, int(min_seconds / max(once, 1e-6)))
                curve[name][size] = min(timed(partial(run, batch), repeats)) / size
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return curve


def fresh_input_curve(net: nn.Module, images: Tensor, min_seconds: float) -> dict[int, float]:
    """Best seconds per sample of building a masked batch with one ``lerp``, then a forward."""
    pool = 2048
    masks = (
        torch.rand(pool, 1, *images.shape[-2:], generator=torch.Generator().manual_seed(0)) > 0.5
    ).float()
    image, fill = images[:1], torch.zeros_like(images[:1])
    curve: dict[int, float] = {}
    with torch.inference_mode():
        for size in BATCH_SIZES:
            starts = iter(range(0, 10**9, size))

            def run(size: int = size, starts: Any = starts) -> None:
                start = next(starts) % (pool - size + 1)
                net(torch.lerp(fill, image, masks[start : start + size]))

            run()
            once = min(timed(run, 2))
            repeats = max(3, int(min_seconds / max(once, 1e-6)))
            curve[size] = min(timed(run, repeats)) / size
    return curve


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(times), "min_s": min(times), "all_s": times}


def tune(
    make: Callable[[int | None], Callable[[], Tensor]], settings: list[int | None]
) -> tuple[int | None, dict[str, float]]:
    """Captum's fastest batching setting: each timed once after its own warm-up."""
    once = {}
    for setting in settings:
        run = make(setting)
        run()
        once[setting] = timed(run, 1)[0]
    return min(once, key=lambda k: once[k]), {str(k): v for k, v in once.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images explained per call")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--curve-seconds",
        type=float,
        default=0.4,
        help="timing budget per batch size and pass kind for the limit curve",
    )
    parser.add_argument("--ig-batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--occlusion-per-eval", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/overhead.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require")
    net, env = shipped_cnn_and_environment(images=args.images, repeats=args.repeats)
    print(" | ".join(f"{k}={v}" for k, v in env.items()))

    images = make_shapes(args.images, seed=args.seed).images
    with torch.no_grad():  # not inference_mode: Captum's autograd graph uses the target
        target = net(images).argmax(1)

    curve_images = make_shapes(64, seed=args.seed + 1).images
    curve = model_curve(net, curve_images, args.curve_seconds)
    fwd, fwd_bwd = min(curve["forward"].values()), min(curve["forward_backward"].values())
    print(f"model-only best: fwd {fwd * 1e3:.3f} ms, fwd+bwd {fwd_bwd * 1e3:.3f} ms per sample")

    model = faithmap.Model(net)  # one Model: batch sizes are calibrated once, in the warm-up
    methods: dict[str, Method] = {
        "saliency": Saliency(),
        "integrated_gradients": IntegratedGradients(),
        "occlusion": Occlusion(),
        "rise": Rise(),
    }
    sal, ig, occ = CaptumSaliency(net), CaptumIG(net), CaptumOcclusion(net)
    ig_kw = {"target": target, "n_steps": 32, "method": "gausslegendre"}
    occ_kw = {"sliding_window_shapes": (3, 8, 8), "strides": (3, 4, 4), "baselines": 0}
    # name -> (Captum run for a batching setting, settings with Captum's default first)
    captum: dict[str, tuple[Callable[[Any], Callable[[], Tensor]], list[Any]]] = {
        "saliency": (lambda _: lambda: sal.attribute(images, target=target, abs=True), [None]),
        "integrated_gradients": (
            lambda b: lambda: ig.attribute(images, internal_batch_size=b, **ig_kw),
            [None, *args.ig_batch_sizes],
        ),
        "occlusion": (
            lambda p: (
                lambda: occ.attribute(images, target=target, perturbations_per_eval=p, **occ_kw)
            ),
            [1, *[p for p in args.occlusion_per_eval if p != 1]],
        ),
    }
    # faithmap's attributions from Captum's: faithmap reduces channels, Captum does not
    reduce = {
        "saliency": lambda a: a.amax(1, keepdim=True),  # faithmap default reduce="max"
        "integrated_gradients": lambda a: a.sum(1, keepdim=True),  # reduce="sum"
        "occlusion": lambda a: a,  # each window covers all channels: channels are equal
    }
    rows: dict[str, dict[str, Any]] = {}
    for name, method in methods.items():
        explanations: list[faithmap.Explanation] = []

        def run(m: Method = method, out: list[faithmap.Explanation] = explanations) -> None:
            out.append(m.explain(model, images, target))

        run()  # warm-up; the first call of each pass kind calibrates the Model's batch size
        contenders: dict[str, Callable[[], object]] = {"faithmap": run}
        row: dict[str, Any] = {"config": method.config()}
        if name in captum:
            make, settings = captum[name]
            reference = make(settings[0])()  # warm-up
            diff = (explanations[0].attributions - reduce[name](reference)).abs().max().item()
            row["max_abs_diff_vs_captum"] = diff
            row["max_abs_captum"] = reference.abs().max().item()
            best, row["captum_sweep_s"] = tune(make, settings)
            row["captum_default_setting"], row["captum_tuned_setting"] = settings[0], best
            contenders["captum_default"] = make(settings[0])
            contenders["captum_tuned"] = make(best)
        times: dict[str, list[float]] = {key: [] for key in contenders}
        for _ in range(args.repeats):  # interleaved, so load changes hit every contender alike
            for key, contender in contenders.items():
                times[key] += timed(contender, 1)
        cost = explanations[-1].cost
        row |= {"forward_rows": cost.forward, "backward_rows": cost.backward}
        row |= {key: summary(values) for key, values in times.items()}
        rows[name] = row
        print(f"{name}: " + ", ".join(f"{k} {row[k]['median_s']:.3f} s" for k in times))
    calibration = {
        "batch_sizes": {str(k): v for k, v in model.measured_batch_sizes.items()},
        "seconds": model.ledger.calibration_seconds,
    }
    # the limit again at the end: the best of both measurements is the limit
    end_curve = model_curve(net, curve_images, args.curve_seconds)
    for kind in curve:
        for size in BATCH_SIZES:
            curve[kind][size] = min(curve[kind][size], end_curve[kind][size])
    fwd, fwd_bwd = min(curve["forward"].values()), min(curve["forward_backward"].values())
    fresh_curve = fresh_input_curve(net, curve_images, args.curve_seconds)
    fresh = min(fresh_curve.values())
    for row in rows.values():
        limit = row["backward_rows"] * fwd_bwd + (row["forward_rows"] - row["backward_rows"]) * fwd
        row["limit_s"] = limit
        if row["backward_rows"] == 0:
            row["fresh_limit_s"] = row["forward_rows"] * fresh
            row["faithmap_over_fresh_limit"] = row["faithmap"]["median_s"] / row["fresh_limit_s"]
            row["faithmap_over_fresh_limit_min"] = row["faithmap"]["min_s"] / row["fresh_limit_s"]
        for key in ("faithmap", "captum_default", "captum_tuned"):
            if key in row:
                row[f"{key}_over_limit"] = row[key]["median_s"] / limit
                row[f"{key}_over_limit_min"] = row[key]["min_s"] / limit
            if key in row and key != "faithmap":
                row[f"faithmap_over_{key}"] = row["faithmap"]["median_s"] / row[key]["median_s"]
                row[f"faithmap_over_{key}_min"] = row["faithmap"]["min_s"] / row[key]["min_s"]

    print("\nmodel-only per-sample ms by batch size (best of repeats, start and end of run)")
    print(f"{'batch':>6} {'fwd':>8} {'fwd+bwd':>8}")
    for size in BATCH_SIZES:
        print(
            f"{size:>6} {curve['forward'][size] * 1e3:8.3f} "
            f"{curve['forward_backward'][size] * 1e3:8.3f}"
        )
    print(f"best: fwd {fwd * 1e3:.3f} ms, fwd+bwd {fwd_bwd * 1e3:.3f} ms\n{FORMULA}")
    print(f"fresh-input limit (lerp of a new mask + forward): {fresh * 1e3:.3f} ms per sample")

    header = (
        "method",
        "fwd/bwd rows",
        "limit s",
        "fm s",
        "fm/lim",
        "fm/fresh",
        "cap.def s",
        "fm/def",
        "cap.tuned s",
        "setting",
        "fm/tuned",
        "max|Δ|",
    )
    print("\n" + " ".join(f"{h:>12}" for h in header))
    for name, r in rows.items():
        cells = [
            name[:12],
            f"{r['forward_rows']}/{r['backward_rows']}",
            f"{r['limit_s']:.3f}",
            f"{r['faithmap']['median_s']:.3f}",
            f"{r['faithmap_over_limit']:.2f}",
            f"{r['faithmap_over_fresh_limit']:.2f}" if "fresh_limit_s" in r else "-",
        ]
        if "captum_default" in r:
            cells += [
                f"{r['captum_default']['median_s']:.3f}",
                f"{r['faithmap_over_captum_default']:.2f}",
                f"{r['captum_tuned']['median_s']:.3f}",
                str(r["captum_tuned_setting"]),
                f"{r['faithmap_over_captum_tuned']:.2f}",
                f"{r['max_abs_diff_vs_captum']:.1e}",
            ]
        print(" ".join(f"{c:>12}" for c in cells))
    print("fm/lim: faithmap wall / limit (target <= 1.10); fm/fresh: the same against the")
    print("fresh-input limit (forward-only methods); fm/def, fm/tuned: faithmap / Captum at")
    print("its defaults (IG target <= 0.6) and tuned by hand (target <= 1.0). Medians of")
    print(f"{args.repeats} interleaved repeats after a warm-up; same ratios from the minima:")
    for name, r in rows.items():
        mins = {k.removesuffix("_min"): f"{v:.2f}" for k, v in r.items() if k.endswith("_min")}
        print(f"  {name}: {mins}")
    print(f"faithmap calibration: {calibration}")

    env["load_avg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "env": env,
        "formula": FORMULA,
        "best_fwd_s": fwd,
        "best_fwd_bwd_s": fwd_bwd,
        "fresh_input_fwd_s": fresh,
        "fresh_input_curve_s_per_sample": fresh_curve,
        "curve_s_per_sample": curve,
        "calibration": calibration,
        "methods": rows,
    }
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
