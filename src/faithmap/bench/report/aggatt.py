"""The AggAtt figure: one row per method, one column per percentile bin of its sorted maps.

Each row shares one colour scale, ending at the 99.5th percentile of its bins' values
(:func:`faithmap.metrics.aggatt`); a dashed outline marks the explained cell.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022 (AggAtt).
"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from faithmap.metrics.grid import AggAttResult
from faithmap.viz import SEQUENTIAL

__all__ = ["aggatt_figure"]


def aggatt_figure(bins: Mapping[str, AggAttResult], *, title: str, scale: int = 2) -> Figure:
    """The AggAtt bins of each method (a row each), best-localised bin on the left.

    Parameters
    ----------
    bins : mapping from a method's name to AggAttResult
        Maps aligned so that the explained cell is the top-left one.
    title : str
    scale : int, default=2
        Cells per side of the grids, for the outline of the explained cell.
    """
    rows = list(bins.items())
    columns = len(rows[0][1].counts) if rows else 1
    figure = Figure(
        figsize=(1.3 * columns + 1.4, 1.3 * max(len(rows), 1) + 0.6), layout="constrained"
    )
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=10)
    axes = figure.subplots(max(len(rows), 1), columns, squeeze=False)
    for r, (name, result) in enumerate(rows):
        edges = result.edges
        for b in range(columns):
            ax = axes[r][b]
            height, width = result.maps[b].shape
            vmax = result.vmax if result.vmax > 0 else 1.0
            ax.imshow(result.maps[b].numpy(), cmap=SEQUENTIAL, vmin=0.0, vmax=vmax)
            ax.add_patch(
                Rectangle(
                    (-0.5, -0.5),
                    width / scale,
                    height / scale,
                    fill=False,
                    edgecolor="#00e676",
                    linestyle="--",
                    linewidth=0.8,
                )
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{edges[b]:.0%}–{edges[b + 1]:.0%}", fontsize=8)
            ax.set_xlabel(f"score {float(result.scores[b]):.2f}", fontsize=7)
            if b == 0:
                ax.set_ylabel(name.replace("$", r"\$"), fontsize=7)
    return figure
