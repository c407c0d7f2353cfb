"""The report's "which method to trust" section: family ranks with paired-bootstrap intervals,
and the agreement between metrics, against hand computations and scipy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

import faithmap.metrics  # noqa: F401 - registers every metric
from faithmap.bench.report import write_report
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.report.palette import metric_family
from faithmap.bench.report.trust import family_ranks, metric_agreement
from faithmap.core.registry import METRICS

NASTY = "<script>window.injected=1</script>"


def _rows(values: dict[tuple[str, str, str], list[float]]) -> list[ReportRow]:
    """``(model, metric, method) -> per-sample values`` as report rows."""
    return [
        ReportRow(i, model, method, metric, v, 1, 0.0, 1, 0.0)
        for (model, metric, method), found in values.items()
        for i, v in enumerate(found)
    ]


DIRECTIONS = {
    "insertion": True,
    "deletion": False,
    "pointing_game": True,
    "model_randomisation": False,
}


def test_a_method_better_on_every_image_has_a_degenerate_interval_even_with_noisy_images() -> None:
    # a = b + 0.05 on every image, while the images themselves vary by 0.8: the bootstrap is
    # paired (one draw of images for every method), so a ranks above b in every draw.
    base = [0.1, 0.9, 0.2, 0.8, 0.5, 0.3]
    rows = _rows(
        {
            ("cnn", "insertion", "a"): [v + 0.05 for v in base],
            ("cnn", "insertion", "b"): base,
        }
    )
    ranks = {r.method: r for r in family_ranks(ReportData("x", {}, rows, DIRECTIONS))}
    assert (ranks["a"].mean_rank, ranks["a"].low, ranks["a"].high) == (1.0, 1.0, 1.0)
    assert (ranks["b"].mean_rank, ranks["b"].low, ranks["b"].high) == (2.0, 2.0, 2.0)


def test_family_rank_is_the_mean_over_the_familys_cells_with_direction() -> None:
    # insertion (higher better): a .9, b .5, c .1 -> ranks 1, 2, 3
    # deletion (lower better):   a .4, b .1, c .2 -> ranks 3, 1, 2
    # faithfulness mean ranks: a 2.0, b 1.5, c 2.5; localisation (pointing): c 1, b 2, a 3
    values = {
        ("cnn", "insertion", "a"): [0.9, 0.9],
        ("cnn", "insertion", "b"): [0.5, 0.5],
        ("cnn", "insertion", "c"): [0.1, 0.1],
        ("cnn", "deletion", "a"): [0.4, 0.4],
        ("cnn", "deletion", "b"): [0.1, 0.1],
        ("cnn", "deletion", "c"): [0.2, 0.2],
        ("cnn", "pointing_game", "a"): [0.0, 0.0],
        ("cnn", "pointing_game", "b"): [0.5, 0.5],
        ("cnn", "pointing_game", "c"): [1.0, 1.0],
    }
    ranks = family_ranks(ReportData("x", {}, _rows(values), DIRECTIONS))
    found = {(r.method, r.family): (r.mean_rank, r.cells) for r in ranks}
    assert found == {
        ("a", "faithfulness"): (2.0, 2),
        ("b", "faithfulness"): (1.5, 2),
        ("c", "faithfulness"): (2.5, 2),
        ("a", "localisation"): (3.0, 1),
        ("b", "localisation"): (2.0, 1),
        ("c", "localisation"): (1.0, 1),
    }
    assert [r.family for r in ranks][::3] == ["faithfulness", "localisation"]


def test_only_cells_every_method_has_are_averaged() -> None:
    values = {
        ("cnn", "insertion", "a"): [0.9],
        ("cnn", "insertion", "b"): [0.1],
        ("vit", "insertion", "a"): [0.1],  # b has no result on vit: the cell is left out
    }
    ranks = {r.method: r for r in family_ranks(ReportData("x", {}, _rows(values), DIRECTIONS))}
    assert (ranks["a"].mean_rank, ranks["a"].cells) == (1.0, 1)
    assert ranks["b"].mean_rank == 2.0


def test_overlapping_methods_have_overlapping_intervals_that_hold_the_point_estimate() -> None:
    generator = np.random.default_rng(1)
    a = generator.normal(0.5, 0.2, 12)
    b = a + generator.normal(0.0, 0.2, 12)
    values = {("cnn", "insertion", "a"): list(a), ("cnn", "insertion", "b"): list(b)}
    ranks = {r.method: r for r in family_ranks(ReportData("x", {}, _rows(values), DIRECTIONS))}
    for r in ranks.values():
        assert r.low <= r.mean_rank <= r.high
    assert ranks["a"].low < ranks["b"].high and ranks["b"].low < ranks["a"].high
    assert ranks["a"].low == 1.0 and ranks["b"].high == 2.0


def test_agreement_is_spearman_of_oriented_means_averaged_over_models() -> None:
    generator = np.random.default_rng(2)
    methods = ["m0", "m1", "m2", "m3", "m4"]
    values: dict[tuple[str, str, str], list[float]] = {}
    expected = []
    for model in ("cnn", "vit"):
        ins = generator.uniform(size=5)
        dele = generator.uniform(size=5)
        for k, method in enumerate(methods):
            values[(model, "insertion", method)] = [float(ins[k])] * 3
            values[(model, "deletion", method)] = [float(dele[k])] * 3
        # deletion is lower-is-better: oriented, its values are negated
        expected.append(stats.spearmanr(ins, -dele).statistic)
    found = metric_agreement(ReportData("x", {}, _rows(values), DIRECTIONS))
    assert found.metrics == ("insertion", "deletion")
    assert math.isclose(found.rho[0][1], float(np.mean(expected)), abs_tol=1e-12)
    assert found.rho[0][1] == found.rho[1][0]
    assert found.rho[0][0] == 1.0 and found.models[0][1] == 2


def test_agreement_needs_three_methods() -> None:
    values = {
        ("cnn", metric, method): [v]
        for metric in ("insertion", "deletion")
        for method, v in (("a", 0.1), ("b", 0.2))
    }
    found = metric_agreement(ReportData("x", {}, _rows(values), DIRECTIONS))
    assert math.isnan(found.rho[0][1]) and found.models[0][1] == 0


def test_the_page_shows_the_section_escaped_and_names_the_unmeasured_families(
    tmp_path: Path,
) -> None:
    values = {
        ("cnn", metric, method): [v + 0.01 * i for i in range(4)]
        for metric in ("insertion", "deletion")
        for method, v in (("a", 0.9), (NASTY, 0.5), ("c", 0.1))
    }
    data = ReportData("x", {}, _rows(values), DIRECTIONS)
    page = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="trust">') :]
    section = section[: section.index("</section>")]
    assert NASTY not in page
    assert "&lt;script&gt;" in section
    assert "Which method to trust" in section
    assert "Not measured in this run: localisation, sanity, robustness, complexity" in section
    # insertion orders a > NASTY > c; deletion (lower is better) orders c > NASTY > a: opposed
    assert "Metrics ordering methods in opposite ways (negative correlation): " in section
    assert "insertion / deletion" in section and "-1.00" in section
    assert "<li><b>faithfulness</b>: " in section


def test_every_registered_metric_has_a_family() -> None:
    # the trust summary groups metrics by family: a metric left as "other" would sit alone
    assert [m for m in sorted(METRICS) if metric_family(m) == "other"] == []
