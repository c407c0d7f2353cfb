"""Evaluation metrics: faithmap against its model-only limit and against Quantus, in one run.

Usage: ``python benchmarks/metrics.py [--images 32] [--threads 1] [--repeats 5]``.

On a built-in model (``--model``, default the CNN) with ``make_shapes`` images and a saliency
explanation (absolute gradient, max over channels), each faithmap metric is divided by its
*model-only limit*: the bare network running the metric's own forward and forward+input-gradient
passes on one cached batch at its best batch size (the two fastest sizes of a per-size curve,
see ``overhead.py``). This VM's timings swing by tens of percent from minute to minute, so
after a warm-up the metric, its limit, the same metric in Quantus and Quantus' limit are timed
in turns, ``--repeats`` times, and every ratio is the median of the ratios within a turn (times
are the best of the turns). Quantus runs on the same inputs, targets and explanation, with
settings as close as its definition allows; its passes are counted with a forward hook on the
network. Values are printed side by side; the notes in the table say where the two
definitions differ (so different values are expected).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import quantus
import torch
from torch import Tensor, nn

import faithmap
from faithmap import metrics as fm
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin
from overhead import cpu_model, model_curve


class Grey(nn.Module):
    """The network on grey images ``(N, 1, H, W)``, copied to its three input channels."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.expand(-1, 3, -1, -1))


class Counter:
    """Rows through the network (a forward hook) and input-gradient rows of Quantus' explainer."""

    def __init__(self, net: nn.Module) -> None:
        self.forward = 0
        self.backward = 0
        net.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        self.forward += int(args[0].shape[0])

    def reset(self) -> None:
        self.forward = self.backward = 0


def per_image_min(x: Tensor) -> Tensor:
    """Quantus' "black" baseline: each image's minimum."""
    return x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x).clone()


def contenders(
    args: argparse.Namespace, explanation: faithmap.Explanation, steps: int
) -> list[dict[str, Any]]:
    """Each metric: faithmap's call, Quantus' metric and call, and how the two differ."""
    size = args.size
    pixels = size * size
    channel_features = 3 * pixels
    per_step = pixels // steps  # Quantus requires a divisor of H * W
    patch = 4
    units = (size // patch) ** 2
    subset = 224
    road_fractions = [0.1 * k for k in range(1, 10)]
    black = faithmap.Removal(fill=per_image_min)
    noise = args.noise_samples
    q = {"disable_warnings": True, "display_progressbar": False}
    return [
        {
            "metric": "deletion",
            "faithmap": lambda m, x, y, e: fm.deletion(m, x, e, target=y, fill=black, steps=steps),
            "quantus": lambda: quantus.PixelFlipping(
                features_in_step=per_step, perturb_baseline="black", normalise=False, **q
            ),
            "quantus_value": lambda scores: [np.trapezoid(s) / (len(s) - 1) for s in scores],
            "note": f"Quantus: {per_step} channel values per step ({channel_features // per_step} "
            f"steps, 3x faithmap's whole-pixel passes), curve without the clean point; its "
            f"default (1 value per step) costs {channel_features} passes per image",
        },
        {
            "metric": "insertion",
            "faithmap": lambda m, x, y, e: fm.insertion(m, x, e, target=y, steps=steps),
            "quantus": None,
            "note": "no Quantus insertion; shares no pass with deletion (blur vs black fill)",
        },
        {
            "metric": "road",
            "faithmap": lambda m, x, y, e: fm.road(
                m, x, e, target=y, measure="accuracy", fractions=road_fractions
            ),
            "faithmap_value": lambda r: float(r.morf.mean()),
            "quantus": lambda: quantus.ROAD(
                percentages=[round(100 * p) for p in road_fractions], noise=0.01, **q
            ),
            "quantus_value": lambda scores: [float(np.mean(list(scores.values())))],
            "note": "on grey copies of the images (Quantus' imputer raises IndexError on RGB: it "
            "masks H*W pixels but indexes C*H*W values); value: MoRF accuracy averaged over "
            "10..90 %; faithmap also scores LeRF (2x passes) for the combined score",
            "grey": True,
        },
        {
            "metric": "faithfulness_correlation",
            "faithmap": lambda m, x, y, e: fm.faithfulness_correlation(
                m, x, e, target=y, subset_size=subset // 3, fill=black
            ),
            "quantus": lambda: quantus.FaithfulnessCorrelation(
                nr_runs=100, subset_size=subset, perturb_baseline="black", normalise=False, **q
            ),
            "note": f"faithmap removes {subset // 3} whole pixels, Quantus {subset} channel values",
        },
        {
            "metric": "faithfulness_estimate",
            "faithmap": lambda m, x, y, e: fm.faithfulness_estimate(
                m, x, e, target=y, unit=f"patches:{patch}", fill=black
            ),
            "quantus": lambda: quantus.FaithfulnessEstimate(
                features_in_step=pixels // units,
                perturb_baseline="black",
                normalise=False,
                **q,
            ),
            "note": f"faithmap: {units} {patch}x{patch} patches; Quantus: "
            f"{channel_features // (pixels // units)} groups of {pixels // units} channel values "
            "in attribution order",
        },
        {
            "metric": "infidelity",
            "faithmap": lambda m, x, y, e: fm.infidelity(m, x, e, target=y, n_samples=50),
            "quantus": lambda: quantus.Infidelity(
                perturb_patch_sizes=[patch], n_perturb_samples=1, perturb_baseline="black", **q
            ),
            "note": "faithmap: Yeh/Captum, 50 Gaussian draws, optimal rescaling; Quantus: "
            f"cumulative {patch}x{patch} patch replacement (1 run: its runs repeat)",
        },
        {
            "metric": "max_sensitivity",
            "faithmap": lambda m, x, y, e: fm.max_sensitivity(
                m, x, e, n_samples=noise, radius=0.02
            ),
            "quantus": lambda: quantus.MaxSensitivity(nr_samples=noise, lower_bound=0.02, **q),
            "note": "same definition; different noise draws",
            "channels": False,
        },
        {
            "metric": "avg_sensitivity",
            "faithmap": lambda m, x, y, e: fm.avg_sensitivity(
                m, x, e, n_samples=noise, radius=0.02
            ),
            "quantus": lambda: quantus.AvgSensitivity(nr_samples=noise, lower_bound=0.02, **q),
            "note": "same definition; different noise draws",
            "channels": False,
        },
        {
            "metric": "local_lipschitz",
            "faithmap": lambda m, x, y, e: fm.local_lipschitz(m, x, e, n_samples=noise),
            "quantus": lambda: quantus.LocalLipschitzEstimate(
                nr_samples=noise, perturb_std=0.1, normalise=False, **q
            ),
            "note": "same definition; different noise draws",
            "channels": False,
        },
    ]


def map_metrics(masks: Tensor) -> list[dict[str, Any]]:
    """Metrics of the map alone (the other half of the suite): no model pass."""
    q = {"disable_warnings": True, "display_progressbar": False, "normalise": False}
    return [
        {
            "metric": name,
            "faithmap": function,
            "quantus": factory,
            "note": note,
            "channels": False,
        }
        for name, function, factory, note in [
            (
                "pointing_game",
                lambda m, x, y, e: fm.pointing_game(e, masks, tolerance=0),
                lambda: quantus.PointingGame(**q),
                "tolerance 0 as Quantus",
            ),
            (
                "relevance_mass_accuracy",
                lambda m, x, y, e: fm.relevance_mass_accuracy(e, masks),
                lambda: quantus.RelevanceMassAccuracy(**q),
                "",
            ),
            (
                "relevance_rank_accuracy",
                lambda m, x, y, e: fm.relevance_rank_accuracy(e, masks),
                lambda: quantus.RelevanceRankAccuracy(**q),
                "",
            ),
            (
                "top_k_intersection",
                lambda m, x, y, e: fm.top_k_intersection(e, masks, k=200),
                lambda: quantus.TopKIntersection(k=200, **q),
                "",
            ),
            (
                "sparseness",
                lambda m, x, y, e: fm.sparseness(e),
                lambda: quantus.Sparseness(**q),
                "Quantus adds 1e-7 to every entry",
            ),
            (
                "complexity",
                lambda m, x, y, e: fm.complexity(e),
                lambda: quantus.Complexity(**q),
                "",
            ),
            (
                "effective_complexity",
                lambda m, x, y, e: fm.effective_complexity(e),
                lambda: quantus.EffectiveComplexity(**q),
                "",
            ),
        ]
    ]


def paired_median(numerators: list[float], denominators: list[float]) -> float:
    """The median ratio of runs timed in turns (robust to the machine's slow minutes)."""
    return float(np.median(np.divide(numerators, denominators)))


class Limit:
    """Times the bare network on a number of forward and forward+backward rows.

    Each kind of pass runs on one cached batch at the two batch sizes fastest per sample in
    ``curve``; the faster of the two counts (timing noise can rank neighbours either way).
    """

    def __init__(self, net: nn.Module, images: Tensor, curve: dict[str, dict[int, float]]):
        self.net = net
        self.images = images
        self.sizes = {
            kind: sorted(per_size, key=per_size.__getitem__)[:2] for kind, per_size in curve.items()
        }

    def _batch(self, size: int) -> Tensor:
        return self.images[torch.arange(size) % self.images.shape[0]].contiguous()

    def _seconds(self, kind: str, rows: int) -> float:
        best = float("inf")
        for size in self.sizes[kind]:
            batch = self._batch(size)
            calls = max(1, round(rows / size))
            start = time.perf_counter()
            for _ in range(calls):
                if kind == "forward":
                    with torch.inference_mode():
                        self.net(batch)
                else:
                    grads = batch.detach().requires_grad_(True)
                    torch.autograd.grad(self.net(grads)[:, 0].sum(), grads)
            best = min(best, (time.perf_counter() - start) * rows / (calls * size))
        return best

    def __call__(self, forward: int, backward: int) -> float:
        """Seconds of ``forward`` passes, ``backward`` of them with an input gradient."""
        seconds = 0.0
        if forward > backward:
            seconds += self._seconds("forward", forward - backward)
        if backward:
            seconds += self._seconds("forward_backward", backward)
        return seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    net = load_builtin(args.model).eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    shapes = make_shapes(args.images, seed=args.seed, size=args.size)
    x, masks = shapes.images, shapes.masks
    with torch.inference_mode():
        y = net(x).argmax(1)
    curve = model_curve(net, x, args.min_seconds)
    limit = Limit(net, x, curve)

    counter = Counter(net)
    model = faithmap.Model(net)
    saliency = faithmap.get_method("saliency")
    explanation = saliency.explain(model, x, y)
    explain_model = faithmap.Model(net)

    def quantus_explain(model: Any, inputs: np.ndarray, targets: np.ndarray, **_: Any) -> Any:
        batch = torch.as_tensor(inputs, dtype=torch.float32)
        before = explain_model.ledger.backward
        result = saliency.explain(explain_model, batch, torch.as_tensor(targets)).attributions
        counter.backward += explain_model.ledger.backward - before
        return result.numpy()

    rows = []
    entries = contenders(args, explanation, args.steps) + map_metrics(masks)
    for entry in entries:
        if args.only and entry["metric"] not in args.only.split(","):
            continue
        call: Callable[..., Any] = entry["faithmap"]
        grey = entry.get("grey", False)
        inputs = x.mean(1, keepdim=True) if grey else x
        network = Grey(net).eval() if grey else net
        wrapped = faithmap.Model(network) if grey else model
        result = call(wrapped, inputs, y, explanation)  # warm-up (and batch-size measurement)
        passes = (result.cost.forward, result.cost.backward)
        with_quantus = entry["quantus"] is not None and not args.without_quantus
        metric = entry["quantus"]() if with_quantus else None
        # Quantus counts features on the attribution array: give the model metrics the map on
        # every channel (as it broadcasts it), the map metrics the map itself.
        maps = explanation.attributions
        maps = maps.expand_as(inputs) if entry.get("channels", True) else maps
        runs: dict[str, list[float]] = {"faithmap": [], "limit": [], "quantus": [], "q_limit": []}
        quantus_passes, scores = (0, 0), None
        for _ in range(args.repeats):  # in turns, so that each pair sees the same machine
            start = time.perf_counter()
            result = call(wrapped, inputs, y, explanation)
            runs["faithmap"].append(time.perf_counter() - start)
            if passes[0]:
                runs["limit"].append(limit(*passes))
            if metric is None:
                continue
            counter.reset()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = metric(
                    model=network,
                    x_batch=inputs.numpy(),
                    y_batch=y.numpy(),
                    a_batch=maps.contiguous().numpy(),
                    s_batch=masks.float().numpy(),
                    device="cpu",
                    explain_func=quantus_explain,
                    explain_func_kwargs={},
                )
            runs["quantus"].append(time.perf_counter() - start)
            quantus_passes = (counter.forward, counter.backward)
            if quantus_passes[0]:
                runs["q_limit"].append(limit(*quantus_passes))
        value_of = entry.get("faithmap_value", lambda r: r.mean)
        row: dict[str, Any] = {
            "metric": entry["metric"],
            "faithmap_s": min(runs["faithmap"]),
            "faithmap_forward": result.cost.forward,
            "faithmap_backward": result.cost.backward,
            "faithmap_value": float(value_of(result)),
            "note": entry["note"],
            "runs_s": runs,
        }
        if runs["limit"]:
            row["faithmap_limit_s"] = min(runs["limit"])
            row["faithmap_over_limit"] = paired_median(runs["faithmap"], runs["limit"])
        if metric is not None:
            row["quantus_s"] = min(runs["quantus"])
            values = entry.get("quantus_value", lambda s: s)(scores)
            row["quantus_value"] = float(np.nanmean(np.asarray(values, dtype=float)))
            row["quantus_forward"], row["quantus_backward"] = quantus_passes
            if runs["q_limit"]:
                row["quantus_limit_s"] = min(runs["q_limit"])
                row["quantus_over_limit"] = paired_median(runs["quantus"], runs["q_limit"])
            row["quantus_over_faithmap"] = paired_median(runs["quantus"], runs["faithmap"])
        rows.append(row)
        print_row(row)
    return {
        "cpu": cpu_model(),
        "threads": args.threads,
        "images": args.images,
        "size": args.size,
        "model": args.model,
        "explanation": "saliency (absolute gradient, max over channels)",
        "limit_batch_sizes": limit.sizes,
        "model_curve": curve,
        "load_avg": os.getloadavg(),
        "rows": rows,
    }


def print_row(row: dict[str, Any]) -> None:
    def fmt(key: str, spec: str = ".3g") -> str:
        return format(row[key], spec) if key in row else "-"

    print(
        f"{row['metric']:<24} fm {fmt('faithmap_s')}s "
        f"({row['faithmap_forward']}f/{row['faithmap_backward']}b, x{fmt('faithmap_over_limit')} "
        f"limit) value {fmt('faithmap_value', '.4f')} | quantus {fmt('quantus_s')}s "
        f"({row.get('quantus_forward', '-')}f/{row.get('quantus_backward', '-')}b, "
        f"x{fmt('quantus_over_limit')} limit) value {fmt('quantus_value', '.4f')} | "
        f"quantus/fm x{fmt('quantus_over_faithmap')}  [{row['note']}]",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=32, help="insertion/deletion steps")
    parser.add_argument("--noise-samples", type=int, default=10, help="robustness draws")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--min-seconds", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="cnn", help="a built-in model: cnn, resnet, vit")
    parser.add_argument("--without-quantus", action="store_true", help="time faithmap only")
    parser.add_argument("--only", default="", help="comma-separated metric names")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/metrics.json")
    args = parser.parse_args()
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
