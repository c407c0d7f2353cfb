"""The benchmark report: numbers against hand computations, escaping, exports, self-containment."""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import math
import re
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread
from scipy import stats

from faithmap.bench.report import LEADERBOARD_FIELDS, write_report
from faithmap.bench.report.data import ReportData, ReportRow
from faithmap.bench.report.palette import (
    METHOD_FAMILIES,
    method_colours,
    method_family,
    metric_family,
)
from faithmap.bench.report.stats import cost_table, leaderboard, mean_interval, t_quantile
from faithmap.bench.report.summary import rank_summary, verdicts
from faithmap.errors import InvalidParameterError, ShapeError

NASTY = "<script>window.injected=1</script> & \"q\" 'x'"
"""A method name that would run a script, break an attribute and an entity if not escaped."""
NASTY_MODEL = 'm&<b>"$\\frac{$'
"""A model name that also breaks matplotlib's mathtext if it is not escaped."""
METHODS = ("saliency", NASTY, "rise")
MODELS = ("cnn", NASTY_MODEL)
VALUES = {  # (model, metric) -> per method, per sample
    ("cnn", "insertion"): ([0.2, 0.4, 0.5, 0.9], [0.1, 0.2, 0.3, 0.2], [0.3, 0.3, 0.3, 0.3]),
    ("cnn", "deletion"): ([0.5, 0.6, 0.7, 0.6], [0.1, 0.1, 0.2, 0.2], [0.3, 0.2, 0.1, 0.2]),
    (NASTY_MODEL, "insertion"): ([0.5, 0.5, 0.5, 0.5], [0.4, 0.6, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2]),
    (NASTY_MODEL, "deletion"): (
        [0.3, 0.4, 0.3, 0.4],
        [0.2, math.nan, 0.2, 0.2],
        [0.9, 0.8, 0.9, 0.9],
    ),
}
"""Hand-picked so that ranks are known: on cnn, saliency has the best insertion (0.5) but the
worst deletion (0.6); on the other model saliency and the nasty method tie on insertion (0.5)."""


def make_data(samples: int = 4) -> ReportData:
    """A small run with two models, three methods, two metrics, curves, maps and masks."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for (model, metric), per_method in VALUES.items():
        for k, method in enumerate(METHODS):
            for i in range(samples):
                passes, seconds = 10.0**k, 0.01 * (k + 1)
                value = per_method[k][i]
                rows.append(ReportRow(i, model, method, metric, value, passes, seconds, 42, 0.5))
    fractions = torch.linspace(0, 1, 11)
    curves = {}
    for model in MODELS:
        for k, method in enumerate(METHODS):
            rise = torch.rand(samples, 11, generator=generator) * 0.1 + fractions ** (k + 1)
            curves[(model, method, "insertion")] = (fractions, rise)
            curves[(model, method, "deletion")] = (fractions, 1 - rise)
    images = torch.rand(samples, 3, 16, 16, generator=generator)
    masks = torch.zeros(samples, 1, 16, 16, dtype=torch.bool)
    masks[:, :, 4:12, 5:11] = True
    attributions = {
        (model, method): torch.randn(samples, 16, 16, generator=generator)
        for model in MODELS
        for method in METHODS
    }
    return ReportData(
        run_id="run <1> & 'two'",
        config={
            "models": list(MODELS),
            "methods": list(METHODS),
            "note": "</pre><marquee>x</marquee>",
        },
        rows=rows,
        higher_is_better={"insertion": True, "deletion": False},
        curves=curves,
        attributions=attributions,
        images=images,
        masks=masks,
        versions={"faithmap": "0.1.0", "torch": torch.__version__},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(make_data(), tmp_path_factory.mktemp("report") / "report.html")


def test_t_quantile_matches_scipy() -> None:
    for df in [*range(1, 41), 57, 100, 999]:
        for level in (0.8, 0.95, 0.99):
            assert t_quantile(level, df) == pytest.approx(
                stats.t.ppf((1 + level) / 2, df), rel=1e-9
            )
    assert round(t_quantile(0.95, 3), 3) == 3.182  # the textbook table


def test_interval_against_a_hand_computation() -> None:
    # mean 0.5; squared deviations 0.09 + 0.01 + 0 + 0.16 = 0.26; s^2 = 0.26 / 3
    half = 3.182446305284263 * math.sqrt(0.26 / 3) / math.sqrt(4)
    mean, low, high = mean_interval([0.2, 0.4, 0.5, 0.9])
    assert (mean, low, high) == pytest.approx((0.5, 0.5 - half, 0.5 + half), rel=1e-12)
    assert (low, high) == pytest.approx(
        stats.t.interval(0.95, 3, 0.5, stats.sem([0.2, 0.4, 0.5, 0.9]))
    )
    assert mean_interval([2.0, math.nan]) == pytest.approx((2.0, math.nan, math.nan), nan_ok=True)
    assert all(math.isnan(v) for v in mean_interval([math.nan]))


def test_ranks_respect_the_direction_of_each_metric() -> None:
    ranks = {(s.model, s.metric, s.method): s.rank for s in leaderboard(make_data())}
    # insertion means 0.5, 0.2, 0.3: higher is better
    assert [ranks[("cnn", "insertion", m)] for m in METHODS] == [1, 3, 2]
    # deletion means 0.6, 0.15, 0.2: lower is better
    assert [ranks[("cnn", "deletion", m)] for m in METHODS] == [3, 1, 2]
    # a tie (0.5 and 0.5) shares the better rank; the NaN sample is left out of the mean
    assert [ranks[(NASTY_MODEL, "insertion", m)] for m in METHODS] == [1, 1, 3]
    assert [ranks[(NASTY_MODEL, "deletion", m)] for m in METHODS] == [2, 1, 3]
    scores = {(s.model, s.metric, s.method): s for s in leaderboard(make_data())}
    assert scores[(NASTY_MODEL, "deletion", NASTY)].n == 3


def test_cost_counts_each_explanation_once() -> None:
    costs = {(c.model, c.method): c for c in cost_table(make_data())}
    assert costs[("cnn", "rise")].expl_passes == 100.0
    assert costs[("cnn", "rise")].expl_seconds == pytest.approx(0.03)
    assert costs[("cnn", "rise")].metric_passes == 84.0  # two metrics of 42 passes each
    assert costs[("cnn", "rise")].metric_seconds == 1.0


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [(tag, k, v or "") for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: Path) -> _Collector:
    collector = _Collector()
    collector.feed(page.read_text(encoding="utf-8"))
    return collector


def test_page_is_self_contained(written: Path) -> None:
    html = written.read_text(encoding="utf-8")
    assert not re.search(r"https?://|//cdn|@import|url\(", html)
    collector = _parse(written)
    for tag, attribute, value in collector.links:
        if tag == "img" or attribute == "src":
            assert value.startswith("data:image/png;base64,")
        elif tag == "a" and not value.startswith("#"):
            assert (written.parent / value).is_file()  # an export beside the page
        else:
            assert value.startswith(("#", "data:")), (tag, attribute, value)
    # two models x (4 inputs + 3 methods x 4 maps), the cost and trade-off figures, the viewer
    assert html.count('<img class="cell"') == 2 * (4 + 3 * 4)
    assert collector.tags.count("img") == 2 * (4 + 3 * 4) + 2 + 1
    assert collector.tags.count("svg") == 4  # curves: 2 models x insertion, deletion
    assert collector.tags.count("script") == 1 and collector.tags.count("style") == 1


def test_style_and_script_are_package_data_inlined_in_the_page(written: Path) -> None:
    html = written.read_text(encoding="utf-8")
    package = files("faithmap.bench.report")
    for name, tag in (("report.css", "style"), ("report.js", "script")):
        text = package.joinpath(name).read_text(encoding="utf-8")
        assert text.strip() and f"<{tag}>{text}</{tag}>" in html


def test_every_label_is_escaped(written: Path) -> None:
    html = written.read_text(encoding="utf-8")
    for raw in (NASTY, NASTY_MODEL, "run <1>", "</pre><marquee>x</marquee>", "<script>window"):
        assert raw not in html
    assert (
        "&lt;script&gt;window.injected=1&lt;/script&gt; &amp; &quot;q&quot; &#x27;x&#x27;" in html
    )
    collector = _parse(written)
    text = "".join(collector.text)
    assert NASTY in text and NASTY_MODEL in text  # shown literally
    assert collector.tags.count("marquee") == 0 and collector.tags.count("script") == 1


def test_leaderboard_csv(written: Path) -> None:
    with (written.parent / "report_leaderboard.csv").open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == LEADERBOARD_FIELDS
    assert len(table) == len(MODELS) * 2 * len(METHODS)
    first = table[0]
    assert (first["model"], first["metric"], first["method"]) == ("cnn", "insertion", "saliency")
    low, high = stats.t.interval(0.95, 3, 0.5, stats.sem([0.2, 0.4, 0.5, 0.9]))
    assert float(first["mean"]) == pytest.approx(0.5)
    assert (float(first["ci_low"]), float(first["ci_high"])) == pytest.approx((low, high))
    assert (first["rank"], first["n"], first["higher_is_better"]) == ("1", "4", "True")
    nasty = [r for r in table if r["method"] == NASTY and r["model"] == NASTY_MODEL]
    assert [r["n"] for r in nasty] == ["4", "3"]


def test_rows_csv_round_trips(written: Path) -> None:
    data = make_data()
    with (written.parent / "report_rows.csv").open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(data.rows)
    for row, line in zip(data.rows, table, strict=True):
        assert (line["model"], line["method"], line["metric"]) == (
            row.model,
            row.method,
            row.metric,
        )
        assert int(line["sample"]) == row.sample
        if math.isnan(row.value):
            assert line["value"] == ""
        else:
            assert float(line["value"]) == row.value
        assert float(line["expl_passes"]) == row.expl_passes


def test_png_exports_beside_the_page(written: Path) -> None:
    html = written.read_text(encoding="utf-8")
    embedded = {
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    }
    files = sorted(written.parent.glob("report_*.png"))
    assert [f.name for f in files] == [
        "report_cost.png",
        "report_curves.png",
        "report_heatmaps_1_cnn.png",
        "report_heatmaps_2_m-b-frac.png",
        "report_tradeoff.png",
    ]
    assert all(f.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for f in files)
    pictures = {f.name: f.read_bytes() for f in files}
    assert {pictures["report_cost.png"], pictures["report_tradeoff.png"]} <= embedded
    # a model's grid: the inputs, then one row per method; 4 samples of 16 x 16 pixels
    grid = imread(io.BytesIO(pictures["report_heatmaps_1_cnn.png"]), format="png")
    assert grid.shape[:2] == ((1 + len(METHODS)) * 16, 4 * 16)
    cells = [
        base64.b64decode(m)
        for m in re.findall(r'<img class="cell"[^>]* src="data:image/png;base64,([^"]+)"', html)
    ]
    assert len(cells) == 2 * (4 + 3 * 4)
    assert cells[:4] == cells[16:20]  # the same inputs head both models' panels
    assert all(imread(io.BytesIO(c), format="png").shape[:2] == (16, 16) for c in cells)


def test_a_report_of_rows_only(tmp_path: Path) -> None:
    rows = [ReportRow(0, "cnn", "saliency", "insertion", 0.25, 2, 0.1, 20, 0.2)]
    page = write_report(ReportData("r", {}, rows, {"insertion": True}), tmp_path / "r.html")
    html = page.read_text(encoding="utf-8")
    assert "No curves in this run." in html and "No attribution maps in this run." in html
    assert "0.250" in html  # a single sample: a mean and no interval


def test_bad_input_is_refused(tmp_path: Path) -> None:
    data = make_data()
    with pytest.raises(InvalidParameterError, match=r"must be a path ending in '\.html'"):
        write_report(data, tmp_path / "report.txt")
    with pytest.raises(InvalidParameterError, match="'max_samples' parameter of write_report"):
        write_report(data, tmp_path / "report.html", max_samples=0)
    with pytest.raises(InvalidParameterError, match="Got none for 'deletion'"):
        ReportData("r", {}, data.rows, {"insertion": True})
    with pytest.raises(ShapeError, match="must have shape \\(4, 16, 16\\)"):
        ReportData(
            "r",
            {},
            data.rows,
            data.higher_is_better,
            images=data.images,
            attributions={("cnn", "saliency"): torch.zeros(4, 8, 8)},
        )
    with pytest.raises(InvalidParameterError, match="needs the 'images'"):
        ReportData("r", {}, data.rows, data.higher_is_better, attributions=data.attributions)


def test_the_best_cells_are_highlighted(written: Path) -> None:
    page = written.read_text(encoding="utf-8")
    html = page[page.index('<section id="leaderboard">') :]
    html = html[: html.index("</section>")]
    best = [float(v) for v in re.findall(r'<td class="best" data-sort="([^"]+)"', html)]
    # rank-1 means: cnn insertion 0.5 (saliency), cnn deletion 0.15 (nasty), other model:
    # insertion 0.5 twice (a tie), deletion 0.2 (nasty, its NaN sample left out)
    assert sorted(best) == pytest.approx(sorted([0.5, 0.15, 0.5, 0.5, 0.2]))
    mean_ranks = re.findall(r'<td class="meanrank( best)?" data-sort="([^"]+)"', html)
    # saliency (1 + 3 + 1 + 2) / 4, nasty (3 + 1 + 1 + 1) / 4, rise (2 + 2 + 3 + 3) / 4
    assert [(flag, float(v)) for flag, v in mean_ranks] == [(" best", 1.5), ("", 1.75), ("", 2.5)]


def test_undefined_values_and_loose_shapes(tmp_path: Path) -> None:
    rows = [
        ReportRow(sample, "cnn", method, "pointing", value, 1, 0.1, 1, 0.1)
        for sample, method, value in [(0, "a", 0.5), (1, "a", 0.7), (0, "b", math.nan)]
    ]
    images = torch.rand(1, 3, 8, 8) * 4 - 2  # not in [0, 1]: stretched for display
    data = ReportData(
        "r",
        {},
        rows,
        {"pointing": True},
        images=images,
        attributions={("cnn", "a"): torch.rand(1, 1, 8, 8)},  # (S, 1, H, W) is squeezed
    )
    assert data.attributions[("cnn", "a")].shape == (1, 8, 8)
    assert [s.rank for s in leaderboard(data)] == [1, None]
    page = write_report(data, tmp_path / "r.html")
    with (tmp_path / "r_leaderboard.csv").open(newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [(r["method"], r["n"], r["mean"], r["rank"]) for r in table] == [
        ("a", "2", "0.6", "1"),
        ("b", "0", "", ""),
    ]
    missing = '<td class="missing" data-sort="" title="undefined for every sample">—</td>'
    assert missing in page.read_text(encoding="utf-8")


def test_mean_rank_is_taken_over_the_cells_every_method_has(tmp_path: Path) -> None:
    data = make_data()
    # rise has no result on the second model (a method that does not apply to it)
    rows = [r for r in data.rows if not (r.model == NASTY_MODEL and r.method == "rise")]
    partial = dataclasses.replace(
        data,
        rows=rows,
        attributions={k: v for k, v in data.attributions.items() if k != (NASTY_MODEL, "rise")},
        skipped={(NASTY_MODEL, "rise"): "rise needs <gradients>"},
    )
    summary = rank_summary(leaderboard(partial), partial.methods)
    assert summary.cells == (("cnn", "insertion"), ("cnn", "deletion"))
    assert summary.left_out == {
        (NASTY_MODEL, "insertion"): ("rise",),
        (NASTY_MODEL, "deletion"): ("rise",),
    }
    # cnn ranks: saliency 1 and 3, the nasty method 3 and 1, rise 2 and 2
    assert summary.mean_rank == {"saliency": 2.0, NASTY: 2.0, "rise": 2.0}
    html = write_report(partial, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "over the 2 model × metric cells where all 3 methods have a result" in html
    assert (
        "Left out: m&amp;&lt;b&gt;&quot;$\\frac{$ (insertion, deletion: no result for rise)" in html
    )
    assert 'title="rise needs &lt;gradients&gt;">—</td>' in html  # the missing cells say why
    assert "rise needs &lt;gradients&gt;</div>" in html  # and its row of maps
    # the summary comes first, labelled as a rank (lower is better)
    head = re.search(r'<table class="sortable leaderboard"><thead>.*?</thead>', html, re.S)
    assert head is not None
    titles = re.findall(r'<th class="sortable[^"]*" data-col="(\d)"', head.group(0))
    assert titles[:2] == ["0", "1"] and "mean rank<br><small>lower is better" in head.group(0)


def test_verdict_names_the_best_and_the_methods_inside_its_interval(written: Path) -> None:
    sentences = verdicts(leaderboard(make_data()), MODELS)
    # cnn: ranks (1, 3), (3, 1), (2, 2): a three-way tie on the mean rank over both metrics;
    # insertion: saliency 0.5 ± 0.468 holds 0.2 and 0.3; deletion: 0.15 ± 0.092 holds 0.2
    assert sentences["cnn"] == (
        f"Best on faithfulness: saliency and {NASTY} and rise (mean rank over insertion, "
        "deletion: 2). Differences within the 95% interval: insertion: saliency, with "
        f"{NASTY}, rise inside its interval; deletion: {NASTY}, with rise inside its interval."
    )
    assert "insertion: saliency, with none inside its interval" not in sentences[NASTY_MODEL]
    html = written.read_text(encoding="utf-8")
    assert '<section id="verdict">' in html and "Best on faithfulness: saliency and" in html


def test_header_names_date_command_and_version(tmp_path: Path) -> None:
    data = dataclasses.replace(
        make_data(), created="2026-12-05T17:44:00+00:00", command="faithmap bench --out '<x>'"
    )
    html = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    made = re.search(r'<div class="made">(.*?)</div>', html)
    assert made is not None
    assert made.group(1) == (
        "created 2026-12-05 17:44:00+00:00 · faithmap 0.1.0 · by "
        "<code>faithmap bench --out &#x27;&lt;x&gt;&#x27;</code>"
    )


def test_maps_name_the_true_and_predicted_class(tmp_path: Path) -> None:
    data = dataclasses.replace(
        make_data(),
        labels=[0, 1, 2, 1],
        predicted={"cnn": [0, 1, 2, 0], NASTY_MODEL: [3, 1, 2, 1]},
        class_names=("disc", "square", "<tri>", "cross"),
    )
    html = write_report(data, tmp_path / "r.html").read_text(encoding="utf-8")
    samples = re.findall(
        r'<div class="sample( wrong)?"><img [^>]*>((?:<span>[^<]*</span>)+)</div>', html
    )
    assert len(samples) == 8  # 4 per model
    assert samples[2] == (
        "",
        "<span>#2</span><span>true: &lt;tri&gt;</span><span>predicted: &lt;tri&gt;</span>",
    )
    assert samples[3][0] == " wrong" and "predicted: disc" in samples[3][1]
    assert [flag for flag, _ in samples] == ["", "", "", " wrong", " wrong", "", "", ""]
    with pytest.raises(ShapeError, match=r"labels of ReportData must give one class per image"):
        dataclasses.replace(make_data(), labels=[0, 1])


def test_method_colours_are_distinct_for_any_number_of_methods() -> None:
    for count in (3, 22, 60):
        colours = list(method_colours([f"method{k}" for k in range(count)]).values())
        assert len(set(colours)) == count
    named = method_colours(list(METHOD_FAMILIES))
    rgb = [tuple(int(c[k : k + 2], 16) for k in (1, 3, 5)) for c in named.values()]
    closest = min(math.dist(a, b) for i, a in enumerate(rgb) for b in rgb[i + 1 :])
    assert closest > 20  # of 441 between black and white
    # as the README's tables group them; a name faithmap does not know is "other"
    assert [method_family(m) for m in ("saliency", "score_cam", "lrp", "rise", "lima")] == [
        "gradient",
        "CAM",
        "LRP",
        "perturbation",
        "subset selection",
    ]
    assert method_family("my_method") == "other" and metric_family("my_metric") == "other"
    assert [metric_family(m) for m in ("deletion", "road", "pointing_game", "sparseness")] == [
        "faithfulness",
        "faithfulness",
        "localisation",
        "complexity",
    ]
