"""Which claims of Rao, Böhle and Schiele (CVPR 2022) hold on the grid suite's scores.

:func:`grid_findings` turns the grid pointing game scores of
:func:`faithmap.bench.grid_suite.run_grid`
into one sentence per claim, "holds" or "does not hold", with the numbers it rests on.

References
----------
Rao, Böhle and Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["GRADIENT", "PERFECT", "grid_findings", "grouped_scores"]

GRADIENT: Final[tuple[str, ...]] = ("saliency", "input_x_gradient", "integrated_gradients")
"""The backpropagation methods, also explained at the middle and final layers (ML-Att)."""

PERFECT: Final = 1 - 1e-6
"""A score at least this high is perfect localisation (all positive mass in the cell)."""


def grouped_scores(scores: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], list[float]]:
    """The scores of each ``(setting, method, layer)``."""
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for row in scores:
        grouped.setdefault((row["setting"], row["method"], row["layer"]), []).append(row["score"])
    return grouped


def _verdict(held: bool) -> str:
    return "holds" if held else "does not hold"


def grid_findings(scores: Sequence[Mapping[str, Any]], *, scale: int = 2) -> list[str]:
    """The paper's qualitative claims, each "holds" or "does not hold", from the scores.

    ``scores`` are :attr:`GridRun.scores` rows. A claim about methods missing from the run is
    left out.
    """
    grouped = grouped_scores(scores)

    def mean(setting: str, method: str, layer: str) -> float | None:
        values = grouped.get((setting, method, layer))
        return None if not values else sum(values) / len(values)

    def low(setting: str, method: str, layer: str) -> float:
        return min(grouped[(setting, method, layer)])

    def has(*keys: tuple[str, str, str]) -> bool:
        return all(key in grouped for key in keys)

    chance = 1 / scale**2
    stated = []
    backprop = [m for m in GRADIENT if has(("difull", m, "input"))]
    if backprop:
        worst = {m: low("difull", m, "input") for m in backprop}
        stated.append(
            "DiFull: backpropagation methods at the input localise perfectly (every map scores "
            "1, no relevance in the disconnected cells): "
            f"{_verdict(min(worst.values()) >= PERFECT)} "
            f"(lowest score: {', '.join(f'{m} {v:.4f}' for m, v in worst.items())})."
        )
    perturbation = [m for m in ("occlusion", "rise") if has(("difull", m, "input"))]
    if perturbation:
        means = {m: mean("difull", m, "input") or 0.0 for m in perturbation}
        stated.append(
            "DiFull: perturbation methods with large windows or masks (occlusion 32 px, RISE) do "
            f"not localise perfectly: {_verdict(max(means.values()) < PERFECT)} "
            f"(mean: {', '.join(f'{m} {v:.3f}' for m, v in means.items())})."
        )
    if has(("dipart", "grad_cam", "final")):
        value = mean("dipart", "grad_cam", "final") or 0.0
        stated.append(
            "DiPart: Grad-CAM at the final layer localises well (mean score >= 0.9): "
            f"{_verdict(value >= 0.9)} (mean {value:.3f})."
        )
    gridpg = [m for m in GRADIENT if has(("gridpg", m, "input"))]
    if gridpg and has(("gridpg", "grad_cam", "final")):
        cam = mean("gridpg", "grad_cam", "final") or 0.0
        others = {m: mean("gridpg", m, "input") or 0.0 for m in gridpg}
        stated.append(
            "GridPG: Grad-CAM at the final layer localises better than every backpropagation "
            f"method at the input: {_verdict(all(cam > v for v in others.values()))} (Grad-CAM "
            f"{cam:.3f}; {', '.join(f'{m} {v:.3f}' for m, v in others.items())})."
        )
    final = [m for m in ("input_x_gradient", "integrated_gradients") if has(("gridpg", m, "final"))]
    if final and has(("gridpg", "grad_cam", "final")):
        cam = mean("gridpg", "grad_cam", "final") or 0.0
        at_final = {m: mean("gridpg", m, "final") or 0.0 for m in final}
        stated.append(
            "ML-Att: at the same (final) layer, Input x Gradient and IG localise like Grad-CAM "
            "on GridPG (within 0.1 of it): "
            f"{_verdict(all(abs(v - cam) <= 0.1 for v in at_final.values()))} "
            f"(Grad-CAM {cam:.3f}; {', '.join(f'{m} {v:.3f}' for m, v in at_final.items())})."
        )
    if has(("gridpg", "saliency", "final")):
        values = grouped[("gridpg", "saliency", "final")]
        spread = max(abs(v - chance) for v in values)
        stated.append(
            "GridPG: the gradient at the final layer, followed by global average pooling, is "
            f"spatially constant, so every map scores the chance level {chance:.2f}: "
            f"{_verdict(spread < 1e-4)} (largest distance from it: {spread:.2e})."
        )
    return stated
