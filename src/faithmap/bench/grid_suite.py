"""``faithmap bench --suite grid``: GridPG, DiFull and DiPart on the built-in CNN (Rao et al.).

The suite makes ``2 x 2`` grids of confidently classified shapes of distinct classes
(:func:`faithmap.data.make_grid`), builds the three settings of the built-in CNN without
retraining (:class:`faithmap.zoo.grid_models.GridModel`), explains the class of every cell
(DiFull and DiPart at the corners, which for ``2 x 2`` are all cells) with gradient, CAM and
perturbation methods, at the input and, for the gradient methods and Grad-CAM, at the middle
and final layers (ML-Att), and scores each map with the grid pointing game. It then states the
paper's qualitative claims as "holds" or "does not hold", and writes the scores (CSV, JSON) and
an HTML report with one AggAtt figure per setting (:mod:`faithmap.bench.grid_report`).

Each (setting, ``method@layer``) is one task of the benchmark store
(:class:`~faithmap.bench.store.Store`, in the output folder): its scores and maps are written
with its done-marker in one transaction, so an interrupted run resumes with no score missing
or doubled, and the findings, AggAtt bins and report are computed from the stored tasks. What
a run measures (methods, layers, configuration, tasks) is :mod:`faithmap.bench.grid_protocol`.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor, nn

from faithmap.api import explain
from faithmap.bench.grid_findings import grid_findings
from faithmap.bench.grid_protocol import (
    GRID_DATA,
    GRID_METHODS,
    LAYERS,
    SUITE_FIELDS,
    GridConfig,
    plan_grid,
)
from faithmap.bench.grid_report import summary, write_grid_results
from faithmap.bench.plan import Task
from faithmap.bench.store import STORE_NAME, Store
from faithmap.bench.work import Row, TaskResult
from faithmap.core.cost import Cost
from faithmap.core.model import Model
from faithmap.data.grid import GridBatch, make_grid
from faithmap.errors import ConstantMapWarning, InvalidParameterError
from faithmap.metrics.grid import AggAttResult, aggatt, bins_filled, grid_scores
from faithmap.zoo import load_builtin
from faithmap.zoo.grid_models import GridModel, corner_cells, layer_attributions

__all__ = [
    "GRID_DATA",
    "GRID_METHODS",
    "LAYERS",
    "SUITE_FIELDS",
    "GridConfig",
    "GridRun",
    "bench_grid",
    "plan_grid",
    "run_grid",
]

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
        Wall time of this call (a resumed run: of the resumed part).
    config : dict
        :meth:`GridConfig.identity` of the run.
    """

    scores: list[dict[str, Any]]
    aggatt: dict[tuple[str, str], AggAttResult]
    findings: list[str]
    grids: GridBatch
    examples: dict[tuple[str, str], Tensor]
    inputs: Tensor
    targets_cells: Tensor
    seconds: float
    config: dict[str, Any]


def _explain(
    model: GridModel, x: Tensor, target: Tensor, method: str, layer: str, seed: int
) -> tuple[Tensor, Cost]:
    """Maps ``(N, 1, H, W)`` of ``method`` at ``layer`` and their cost (none counted for a
    method explaining a cut model at a layer)."""
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
) -> tuple[Tensor, Cost]:
    if _counted(method, layer):
        wrapped = Model(model, batch_size=_BATCH)
        explanation = explain(wrapped, x, method=method, target=target, **params)
        return explanation.attributions, explanation.cost
    maps = layer_attributions(
        model,
        x,
        method=method,
        layer=str(LAYERS[layer]),
        target=target,
        batch_size=_BATCH,
        **params,
    )
    return maps, Cost()


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


def _counted(method: str, layer: str) -> bool:
    """Whether the passes of ``method`` at ``layer`` are counted (not for a cut model)."""
    return layer == "input" or method == "grad_cam"


@dataclass(frozen=True)
class _Samples:
    """The grids and, per explained map, its grid, cell and the input it explains."""

    grids: GridBatch
    grid_index: Tensor
    cell_index: Tensor

    @staticmethod
    def of(base: nn.Module, config: GridConfig) -> _Samples:
        grids = make_grid(Model(base, batch_size=64), config.n_grids, seed=config.seed)
        cells = torch.tensor(corner_cells(grids.scale))
        grid_index = torch.arange(config.n_grids).repeat_interleave(len(cells))
        return _Samples(grids, grid_index, cells.repeat(config.n_grids))


def _task_result(base: nn.Module, samples: _Samples, task: Task, seed: int) -> TaskResult:
    """Explain every cell with the task's method at its layer and score each map."""
    method, layer = task.method.split("@")
    grids = samples.grids
    model = GridModel(base, task.model, scale=grids.scale)  # type: ignore[arg-type]
    labels = grids.labels[samples.grid_index, samples.cell_index]
    target = model.target(samples.cell_index, labels)
    started = time.perf_counter()
    maps, spent = _explain(model, grids.images[samples.grid_index], target, method, layer, seed)
    spent = Cost(spent.forward, spent.backward, time.perf_counter() - started)
    values = grid_scores(maps, grids.cells[samples.cell_index])[:, 0].double().tolist()
    n, params = len(values), json.dumps(task.params, sort_keys=True, default=repr)
    rows = [
        Row(
            model=task.model,
            method=task.method,
            metric="grid_pointing_game",
            sample=i,
            value=values[i],
            target=int(labels[i]),
            explain_forward=spent.forward / n,
            explain_backward=spent.backward / n,
            explain_seconds=spent.seconds / n,
            metric_forward=0.0,
            metric_backward=0.0,
            metric_seconds=0.0,
            params=params,
        )
        for i in range(n)
    ]
    return TaskResult(task, rows, maps.detach().float().sum(1).cpu().contiguous(), {}, spent)


def run_grid(
    *,
    n_grids: int = 8,
    arch: str = "cnn",
    seed: int = 1,
    methods: Sequence[str] = tuple(GRID_METHODS),
    out: str | Path = Path("faithmap-bench"),
    log: Callable[[str], None] | None = None,
    command: str = "",
) -> GridRun:
    """Run (or resume) the grid suite in this process (see the module docstring).

    Each (setting, method@layer) is a task of the store in ``out``: a resumed run explains
    only the tasks not yet stored, and the result holds every task's scores once.

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
    out : str or Path, default="faithmap-bench"
        Folder of the store (``bench.sqlite``).
    log : callable, optional
        Called with a line after each stored task.
    command : str, default=""
        The command line, kept with a new run in the store.
    """
    config = GridConfig(n_grids, arch, seed, tuple(methods), Path(out))
    started = time.perf_counter()
    base = load_builtin(arch)
    samples = _Samples.of(base, config)
    tasks = plan_grid(config, len(samples.cell_index))
    with Store(config.out) as store:
        run = store.open_run(config, command=command)
        for task in tasks:
            if task.id in store.done(run):  # stored earlier, or meanwhile by another process
                continue
            written = store.write(run, _task_result(base, samples, task, seed))
            if log is not None:
                what = "stored" if written else "already stored by another process"
                log(
                    f"[{len(store.done(run))}/{len(tasks)}] {task.id} {what} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
        rows, maps = store.rows(run), store.maps(run)
    return _collect(rows, maps, samples, time.perf_counter() - started, config.identity())


def _collect(
    rows: Sequence[Row],
    maps: Mapping[tuple[str, str], Mapping[int, Tensor]],
    samples: _Samples,
    seconds: float,
    identity: dict[str, Any],
) -> GridRun:
    """The run's scores, AggAtt bins, findings and example maps from the stored tasks."""
    grids, per_grid = samples.grids, len(corner_cells(samples.grids.scale))
    scores = []
    for row in rows:
        method, layer = row.method.split("@")
        passes = row.explain_forward + row.explain_backward
        scores.append(
            {
                "setting": row.model,
                "method": method,
                "layer": layer,
                "sample": row.sample,
                "grid": row.sample // per_grid,
                "cell": int(samples.cell_index[row.sample]),
                "score": row.value,
                "passes": passes if _counted(method, layer) else float("nan"),
            }
        )
    side = grids.images.shape[-1] // grids.scale
    found: dict[tuple[str, str], AggAttResult] = {}
    kept: dict[tuple[str, str], Tensor] = {}
    for key, by_sample in maps.items():
        stacked = torch.stack([by_sample[i] for i in range(len(samples.cell_index))])
        kept[key] = stacked
        if bins_filled(len(stacked)):
            rolled = _to_first_cell(stacked, samples.cell_index, grids.scale, side)
            found[key] = aggatt(rolled, grids.cells[:1].expand(len(rolled), -1, -1, -1))
    return GridRun(
        scores=scores,
        aggatt=found,
        findings=grid_findings(scores, scale=grids.scale),
        grids=grids,
        examples=kept,
        inputs=grids.images[samples.grid_index],
        targets_cells=samples.cell_index,
        seconds=seconds,
        config=identity,
    )


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
    folder = Path("faithmap-bench") if out is None else out
    try:
        run = run_grid(
            n_grids=8 if samples is None else samples,
            seed=1 if seed is None else seed,
            methods=tuple(GRID_METHODS) if methods is None else tuple(methods),
            out=folder,
            log=say,
            command=command,
        )
    except KeyboardInterrupt:
        say(
            f"interrupted: the finished tasks are stored in {folder / STORE_NAME}; run the "
            "same command again to resume."
        )
        raise SystemExit(130) from None
    for row in summary(run.scores):
        say(
            f"{row['setting']:7} {row['method'] + '@' + row['layer']:32} "
            f"{row['mean']:.3f} (min {row['min']:.3f}, n {row['n']})"
        )
    say("grid suite findings:")
    for line in run.findings:
        say(f"- {line}")
    written = write_grid_results(run, folder, command=command)
    say(f"{run.seconds:.0f} s; wrote " + ", ".join(map(str, written)))
    return run
