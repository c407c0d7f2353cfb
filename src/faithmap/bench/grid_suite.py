"""``faithmap bench --suite grid``: GridPG, DiFull and DiPart on the built-in CNN (Rao et al.).

The suite makes ``2 x 2`` grids of confidently classified shapes of distinct classes
(:func:`faithmap.data.make_grid`), builds the three settings of the built-in CNN without
retraining (:class:`faithmap.zoo.grid_models.GridModel`), explains the class of every cell
(DiFull and DiPart at the corners, which for ``2 x 2`` are all cells) with gradient, CAM and
perturbation methods, at the input and, for the gradient methods and Grad-CAM, at the middle
and final layers (ML-Att), and scores each map with the grid pointing game. It then states the
paper's qualitative claims as "holds" or "does not hold", writes the scores (CSV, JSON) and an
HTML report with one AggAtt figure per setting.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import torch
from torch import Tensor

from faithmap.api import explain
from faithmap.bench.grid_findings import GRADIENT, grid_findings, grouped_scores
from faithmap.bench.report import write_report
from faithmap.bench.report.aggatt import aggatt_figure
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.report.figures import png_bytes
from faithmap.core.model import Model
from faithmap.core.validation import check_int
from faithmap.data.grid import GridBatch, make_grid
from faithmap.errors import ConstantMapWarning, InvalidParameterError
from faithmap.metrics.grid import AggAttResult, aggatt, bins_filled, grid_scores
from faithmap.zoo import load_builtin
from faithmap.zoo.grid_models import GRID_SETTINGS, GridModel, corner_cells, layer_attributions

__all__ = [
    "GRID_DATA",
    "GRID_METHODS",
    "LAYERS",
    "SUITE_FIELDS",
    "GridRun",
    "bench_grid",
    "run_grid",
    "summary",
    "write_grid_results",
]

GRID_DATA: Final = "grid"
"""The ``data`` of the grid :class:`~faithmap.bench.suites.Suite`: the CLI runs this module."""

GRID_METHODS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "saliency": {},
        "input_x_gradient": {},
        "integrated_gradients": {"steps": 16},
        "grad_cam": {"layer": "features"},
        # A large window, half a 64 px cell (the paper's large one is 16 px, stride 8, on
        # 224 px cells): windows at 48 and 64 px straddle the border between cells.
        "occlusion": {"window": 32, "stride": 16},
        "rise": {"n_masks": 200},
    }
)
"""The methods and their parameters (the rest at their defaults)."""

LAYERS: Final[Mapping[str, str | None]] = MappingProxyType(
    {"input": None, "middle": "block2", "final": "features"}
)
"""ML-Att's layers of the built-in CNN: the input, the second block, the last block."""

_FAMILIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "saliency": "gradient",
        "input_x_gradient": "gradient",
        "integrated_gradients": "gradient",
        "grad_cam": "cam",
        "occlusion": "perturbation",
        "rise": "perturbation",
    }
)

SUITE_FIELDS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "name": "grid",
        "reference": (
            'Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", '
            "CVPR 2022 (grid pointing game, DiFull, DiPart, ML-Att, AggAtt)"
        ),
        "models": ("cnn",),
        "families": _FAMILIES,
        "metrics": ("grid_pointing_game",),
        "method_params": GRID_METHODS,
        "n_samples": 8,
        "data_seed": 1,
        "data": GRID_DATA,
    }
)
"""The suite's fields (:class:`faithmap.bench.suites.Suite` is built from them); ``n_samples``
counts grids."""

_BATCH: Final = 32


@dataclass(frozen=True)
class GridRun:
    """What :func:`run_grid` measured.

    Attributes
    ----------
    scores : list of dict
        One per map: ``setting, method, layer, sample, grid, cell, score, passes`` (passes
        per map; NaN for attributions at a layer, whose cost is not counted).
    aggatt : dict
        ``(setting, "method@layer")`` → :class:`~faithmap.metrics.AggAttResult` of the maps,
        each rolled so that its explained cell is the top-left one.
    findings : list of str
        The paper's claims, each with "holds" or "does not hold" and its numbers.
    grids : GridBatch
        The grids explained.
    examples : dict
        ``(setting, "method@layer")`` → the maps ``(S, H, W)``.
    inputs, targets_cells : Tensor
        The samples: grids ``(S, 3, H, W)`` and the cell each explains.
    seconds : float
        Wall time of the run.
    """

    scores: list[dict[str, Any]]
    aggatt: dict[tuple[str, str], AggAttResult]
    findings: list[str]
    grids: GridBatch
    examples: dict[tuple[str, str], Tensor]
    inputs: Tensor
    targets_cells: Tensor
    seconds: float


def _jobs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """``(method, layer)`` pairs: every method at the input, ML-Att layers where they apply."""
    jobs = [(method, "input") for method in methods if method != "grad_cam"]
    for layer in ("middle", "final"):
        jobs += [(method, layer) for method in methods if method in GRADIENT]
        jobs += [("grad_cam", layer)] if "grad_cam" in methods else []
    return jobs


def _explain(
    model: GridModel, x: Tensor, target: Tensor, method: str, layer: str, seed: int
) -> tuple[Tensor, float]:
    """Maps ``(N, 1, H, W)`` and passes per map of ``method`` at ``layer``."""
    params = dict(GRID_METHODS.get(method, {}))
    if "seed" in _seeded(method):
        params["seed"] = seed
    if method == "grad_cam":
        params["layer"] = LAYERS[layer]
    with warnings.catch_warnings():
        # The gradient at the final layer of a network with global average pooling is constant
        # (a claim the findings check), which faithmap warns about: expected here.
        warnings.simplefilter("ignore", ConstantMapWarning)
        return _explain_at(model, x, target, method, layer, params)


def _explain_at(
    model: GridModel, x: Tensor, target: Tensor, method: str, layer: str, params: dict[str, Any]
) -> tuple[Tensor, float]:
    if layer == "input" or method == "grad_cam":
        wrapped = Model(model, batch_size=_BATCH)
        explanation = explain(wrapped, x, method=method, target=target, **params)
        return explanation.attributions, explanation.cost.passes / x.shape[0]
    maps = layer_attributions(
        model,
        x,
        method=method,
        layer=str(LAYERS[layer]),
        target=target,
        batch_size=_BATCH,
        **params,
    )
    return maps, float("nan")


def _seeded(method: str) -> set[str]:
    return {"seed"} if method == "rise" else set()


def _to_first_cell(maps: Tensor, cells: Tensor, scale: int, side: int) -> Tensor:
    """Each ``(H, W)`` map rolled by whole cells so that its explained cell is the top-left."""
    return torch.stack(
        [
            torch.roll(m, (-(int(c) // scale) * side, -(int(c) % scale) * side), (-2, -1))
            for m, c in zip(maps, cells, strict=True)
        ]
    )


def run_grid(
    *,
    n_grids: int = 8,
    arch: str = "cnn",
    seed: int = 1,
    methods: Sequence[str] = tuple(GRID_METHODS),
    log: Callable[[str], None] | None = None,
) -> GridRun:
    """Run the grid suite in this process (see the module docstring).

    Parameters
    ----------
    n_grids : int, default=8
        ``2 x 2`` grids; every cell of each is explained (``4 * n_grids`` maps per setting,
        method and layer).
    arch : {"cnn", "resnet"}, default="cnn"
        The built-in model.
    seed : int, default=1
        Seed of the grids (and of RISE).
    methods : sequence of str
        A subset of :data:`GRID_METHODS`.
    log : callable, optional
        Called with a line per setting and method.
    """
    n_grids = check_int(n_grids, "n_grids", "run_grid", low=1)
    unknown = [method for method in methods if method not in GRID_METHODS]
    if unknown or not methods:
        raise InvalidParameterError(
            f"The grid suite runs methods among {', '.join(GRID_METHODS)}. Got "
            f"{', '.join(map(repr, unknown)) or 'none'}."
        )
    started = time.perf_counter()
    base = load_builtin(arch)
    grids = make_grid(Model(base, batch_size=64), n_grids, seed=seed)
    scores: list[dict[str, Any]] = []
    found: dict[tuple[str, str], AggAttResult] = {}
    kept: dict[tuple[str, str], Tensor] = {}
    cells = torch.tensor(corner_cells(grids.scale))
    grid_index = torch.arange(n_grids).repeat_interleave(len(cells))
    cell_index = cells.repeat(n_grids)
    x = grids.images[grid_index]
    masks = grids.cells[cell_index]
    side = grids.images.shape[-1] // grids.scale
    for setting in GRID_SETTINGS:
        model = GridModel(base, setting, scale=grids.scale)  # type: ignore[arg-type]
        target = model.target(cell_index, grids.labels[grid_index, cell_index])
        for method, layer in _jobs(methods):
            maps, passes = _explain(model, x, target, method, layer, seed)
            values = grid_scores(maps, masks)[:, 0]
            key = (setting, f"{method}@{layer}")
            scores += [
                {
                    "setting": setting,
                    "method": method,
                    "layer": layer,
                    "sample": i,
                    "grid": int(g),
                    "cell": int(c),
                    "score": float(v),
                    "passes": passes,
                }
                for i, (g, c, v) in enumerate(zip(grid_index, cell_index, values, strict=True))
            ]
            if bins_filled(len(maps)):
                rolled = _to_first_cell(maps.sum(1), cell_index, grids.scale, side)
                found[key] = aggatt(rolled, grids.cells[:1].expand(len(rolled), -1, -1, -1))
            kept[key] = maps[:, 0].detach().cpu()
            if log is not None:
                log(
                    f"{setting}: {method}@{layer} mean {float(values.mean()):.3f} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
    stated = grid_findings(scores, scale=grids.scale)
    return GridRun(
        scores=scores,
        aggatt=found,
        findings=stated,
        grids=grids,
        examples=kept,
        inputs=x,
        targets_cells=cell_index,
        seconds=time.perf_counter() - started,
    )


def summary(scores: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean grid pointing game score and passes per map, per setting, method and layer."""
    grouped = grouped_scores(scores)
    passes = {(r["setting"], r["method"], r["layer"]): r["passes"] for r in scores}
    return [
        {
            "setting": setting,
            "method": method,
            "layer": layer,
            "n": len(values),
            "mean": sum(values) / len(values),
            "min": min(values),
            "passes_per_map": passes[(setting, method, layer)],
        }
        for (setting, method, layer), values in grouped.items()
    ]


def _report_data(run: GridRun, command: str) -> ReportData:
    rows = [
        ReportRow(
            sample=row["sample"],
            model=row["setting"],
            method=f"{row['method']}@{row['layer']}",
            metric="grid_pointing_game",
            value=row["score"],
            expl_passes=row["passes"],
            expl_seconds=float("nan"),
            metric_passes=0.0,
            metric_seconds=0.0,
        )
        for row in run.scores
    ]
    figures = []
    for setting in GRID_SETTINGS:
        bins = {key[1]: result for key, result in run.aggatt.items() if key[0] == setting}
        if bins:
            figure = aggatt_figure(bins, title=f"AggAtt, {setting}", scale=run.grids.scale)
            caption = (
                f"AggAtt on {setting}: one row per method, its maps rolled so the explained cell "
                "is the top-left one (dashed), sorted by grid pointing game score and averaged "
                "per percentile bin, best 2 % on the left; one colour scale per row."
            )
            figures.append((caption, png_bytes(figure)))
    cells = run.targets_cells
    masks = run.grids.cells[cells]
    per_grid = len(corner_cells(run.grids.scale))
    labels = [int(run.grids.labels[i // per_grid, c]) for i, c in enumerate(cells.tolist())]
    return ReportData(
        run_id="grid",
        config={"suite": "grid", "methods": dict(GRID_METHODS), "layers": dict(LAYERS)},
        rows=rows,
        higher_is_better={"grid_pointing_game": True},
        attributions={(k[0], k[1]): v for k, v in run.examples.items()},
        images=run.inputs,
        masks=masks,
        findings=run.findings,
        command=command,
        labels=labels,
        class_names=run.grids.class_names,
        figures=figures,
    )


def write_grid_results(run: GridRun, out: str | Path, *, command: str = "") -> list[Path]:
    """Write ``grid_scores.csv`` (every map), ``grid_summary.json`` (means, findings, time)
    and the report ``grid_report.html`` (with the AggAtt figures) into the folder ``out``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    scores, summary_path = folder / "grid_scores.csv", folder / "grid_summary.json"
    with scores.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(run.scores[0]))
        writer.writeheader()
        writer.writerows(run.scores)
    record = {
        "suite": "grid",
        "n_grids": len(run.grids),
        "maps_per_setting_method_layer": len(run.targets_cells),
        "chance": 1 / run.grids.scale**2,
        "seconds": round(run.seconds, 1),
        "summary": summary(run.scores),
        "findings": run.findings,
        "command": command,
    }
    summary_path.write_text(json.dumps(record, indent=2, allow_nan=True), encoding="utf-8")
    page = write_report(_report_data(run, command), folder / "grid_report.html")
    return [scores, summary_path, page]


def bench_grid(
    *,
    samples: int | None,
    methods: Sequence[str] | None,
    seed: int | None,
    out: Path | None,
    say: Callable[[str], None],
    unused: Mapping[str, object],
    command: str = "",
) -> GridRun:
    """``faithmap bench --suite grid``: run, print the means and findings, write the results.

    ``samples`` is the number of grids (default 8), ``seed`` the grids' seed (default 1);
    ``unused`` maps each flag that does not apply to its value (``None`` when not given).
    """
    given = [flag for flag, value in unused.items() if value is not None]
    if given:
        raise InvalidParameterError(
            f"{', '.join(given)} do not apply to the grid suite: it runs the built-in CNN on its "
            "own 2 x 2 grids of shapes. Use --samples (grids), --methods, --seed and --out."
        )
    run = run_grid(
        n_grids=8 if samples is None else samples,
        seed=1 if seed is None else seed,
        methods=tuple(GRID_METHODS) if methods is None else tuple(methods),
        log=say,
    )
    for row in summary(run.scores):
        say(
            f"{row['setting']:7} {row['method'] + '@' + row['layer']:32} "
            f"{row['mean']:.3f} (min {row['min']:.3f}, n {row['n']})"
        )
    say("grid suite findings:")
    for line in run.findings:
        say(f"- {line}")
    written = write_grid_results(
        run, Path("faithmap-bench") if out is None else out, command=command
    )
    say(f"{run.seconds:.0f} s; wrote " + ", ".join(map(str, written)))
    return run
