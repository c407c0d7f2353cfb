"""Insertion and deletion of signed maps, ranked by signed value and by magnitude.

Usage: ``python benchmarks/signed_maps.py [--images 16] [--models cnn resnet] [--out PATH]``.

Insertion and deletion move the *most positive* attribution first (``rank_by="signed"``, the
default, as RISE's code and Quantus' ``abs=False``). A method whose maps are signed, such as
Integrated Gradients, puts its negative evidence last, so part of the object comes in last;
``rank_by="absolute"`` ranks by ``|a|``. This script explains ``--images`` built-in shapes with
the signed methods at the benchmark's settings and with two non-negative references (RISE,
Grad-CAM, whose scores must not move), and prints both AUCs with the share of each map's
object pixels that are negative. Saves JSON. Numbers, not timings: the machine's load does not
change them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

METHODS = {
    "integrated_gradients": {},
    "input_x_gradient": {},
    "gradient_shap": {},
    "lrp": {},
    "rise": {"n_masks": 1000},
    "grad_cam": {},
}
"""Methods and their parameters (RISE at the benchmark's 1000 masks)."""


def measure(model_name: str, images: int) -> list[dict[str, Any]]:
    """One row per method: insertion and deletion AUC, signed and absolute."""
    import faithmap
    from faithmap.data import make_shapes
    from faithmap.metrics import deletion, insertion
    from faithmap.zoo import load_builtin

    data = make_shapes(images, seed=0)
    model = faithmap.Model(load_builtin(model_name))
    rows = []
    for method, params in METHODS.items():
        exp = faithmap.explain(model, data.images, method=method, **params)
        maps = exp.attributions.sum(1, keepdim=True)
        negative = float(((maps < 0) & data.masks).sum() / data.masks.sum())
        row: dict[str, Any] = {"model": model_name, "method": method, "negative": negative}
        for rank_by in ("signed", "absolute"):
            row[f"insertion_{rank_by}"] = insertion(model, data.images, exp, rank_by=rank_by).mean
            row[f"deletion_{rank_by}"] = deletion(model, data.images, exp, rank_by=rank_by).mean
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet"])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/signed_maps.json"
    )
    options = parser.parse_args()
    rows = [row for name in options.models for row in measure(name, options.images)]
    print(
        f"{'model':8} {'method':22} {'neg. on object':>14} {'insertion ↑ signed / abs':>26} "
        f"{'deletion ↓ signed / abs':>25}"
    )
    for r in rows:
        print(
            f"{r['model']:8} {r['method']:22} {r['negative']:14.2f} "
            f"{r['insertion_signed']:12.3f} / {r['insertion_absolute']:.3f} "
            f"{r['deletion_signed']:16.3f} / {r['deletion_absolute']:.3f}"
        )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps({"images": options.images, "rows": rows}, indent=2) + "\n")
    print(f"saved {options.out}")


if __name__ == "__main__":
    main()
