"""Agreement of the Quantus-parity faithfulness metrics with Quantus 0.6.0 on a real model.

Usage: ``python benchmarks/quantus_faithfulness.py [--images 4] [--size 32]``.

On the built-in CNN with ``make_shapes`` images and Integrated Gradients maps, each metric runs
in faithmap and in Quantus with the same targets, attributions, constant fill (0) and grouping,
and the largest absolute difference is printed (and saved to ``results/``). Where Quantus'
definition differs, the documented relation is compared instead (see each metric's docstring):
Monotonicity against Quantus with an inserting perturb_func (as shipped it refills the baseline
with itself and returns True everywhere), IROF through ``R * value + (1 + f(x_1)/f(x)) / 2``
on the same SLIC segments, Selectivity's curve without its first point. The images are grey
(see ``main``), so Quantus' features are faithmap's pixels.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import quantus
import torch
from skimage.segmentation import slic

import faithmap
from faithmap import metrics as fm
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin


def quiet(metric: Any, **data: Any) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(**data, device="cpu"), dtype=float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    np.trapz = np.trapezoid  # type: ignore[attr-defined]  # Quantus 0.6.0 calls np.trapz (NumPy < 2)
    batch = make_shapes(args.images, seed=0, size=args.size)
    # grey images through a 1x1 convolution copying them to the CNN's 3 channels: Quantus needs
    # features_in_step to divide H * W and ranks channel values, so one channel keeps its
    # features and faithmap's pixels the same (and its IROF fails on several channels)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1, bias=False), load_builtin("cnn")).eval()
    net[0].weight.data.fill_(1.0)
    x, labels = batch.images.mean(1, keepdim=True), batch.labels
    ours_model = faithmap.Model(net, batch_size=64)
    maps = faithmap.explain(
        ours_model, x, method="integrated_gradients", target=labels
    ).attributions
    maps = maps.sum(1, keepdim=True)
    data = {"model": net, "x_batch": x.numpy(), "y_batch": labels.numpy(), "a_batch": maps.numpy()}
    xs = x.numpy().reshape(x.shape[0], -1)
    rows: dict[str, float] = {}

    def insert(arr: np.ndarray, indices: np.ndarray, **_: Any) -> np.ndarray:
        out, index = arr.copy(), np.arange(arr.shape[0])[:, None]
        out[index, indices] = xs[index, indices]
        return out

    ours = fm.monotonicity(ours_model, x, maps, target=labels, steps=16)
    fixed = quantus.Monotonicity(
        perturb_func=insert,
        perturb_baseline=0.0,
        features_in_step=args.size**2 // 16,
        disable_warnings=True,
    )
    verdicts = (ours.curve[:, 1:].diff(dim=1) >= 0).all(1).numpy()
    rows["monotonicity: verdicts differing (of N)"] = float(
        (quiet(fixed, **data) != verdicts).sum()
    )
    shipped = quantus.Monotonicity(
        perturb_baseline=0.0, features_in_step=args.size**2 // 16, disable_warnings=True
    )
    rows["monotonicity: Quantus as shipped, share True"] = float(quiet(shipped, **data).mean())
    rows["monotonicity: faithmap, share 1"] = ours.mean

    for softmax in (True, False):
        ours_c = fm.monotonicity_correlation(
            ours_model,
            x,
            maps,
            target=labels,
            steps=64,
            activation="softmax" if softmax else "logits",
        )
        theirs = quiet(
            quantus.MonotonicityCorrelation(
                perturb_baseline=0.0,
                nr_samples=1,
                features_in_step=args.size**2 // 64,
                disable_warnings=True,
            ),
            **data,
            softmax=softmax,
        )
        name = f"monotonicity_correlation ({'softmax' if softmax else 'logits'}): max |diff|"
        mine = ours_c.values.double().numpy()
        same_nan = bool((np.isnan(mine) == np.isnan(theirs)).all())
        rows[name] = float(np.nanmax(np.abs(mine - theirs))) if same_nan else float("inf")
        rows[name.replace("max |diff|", "NaN in both (a flat score)")] = float(np.isnan(mine).sum())

    ours_s = fm.selectivity(ours_model, x, maps, target=labels, unit="patches:8")
    theirs_s = quiet(
        quantus.Selectivity(patch_size=8, perturb_baseline=0.0, disable_warnings=True), **data
    )
    rows["selectivity curve: max |diff|"] = float(
        np.abs(ours_s.curve[:, 1:].double().numpy() - theirs_s).max()
    )

    segments = np.stack(  # as Quantus segments: SLIC defaults on the (H, W, C) image
        [slic(np.moveaxis(g.double().numpy(), 0, -1), start_label=0) for g in x]
    )
    ours_i = fm.irof(
        ours_model, x, maps, target=labels, unit=torch.from_numpy(segments).long(), fill=0.0
    )
    related = ours_i.regions * ours_i.values + (1 + ours_i.curve[:, 1] / ours_i.curve[:, 0]) / 2
    theirs_i = [
        float(
            quiet(
                quantus.IROF(perturb_baseline=0.0, return_aggregate=False, disable_warnings=True),
                model=net,
                x_batch=x.numpy()[i : i + 1],
                y_batch=labels.numpy()[i : i + 1],
                a_batch=maps.numpy()[i : i + 1],
            )[0]
        )
        for i in range(x.shape[0])
    ]
    rows["irof relation: max |diff| / R"] = float(
        ((related.double() - torch.tensor(theirs_i)).abs() / ours_i.regions).max()
    )

    for name, value in rows.items():
        print(f"{name:55s} {value:.3g}")
    out = Path(__file__).parent / "results" / "quantus_faithfulness.json"
    out.write_text(json.dumps({"images": args.images, "size": args.size, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
