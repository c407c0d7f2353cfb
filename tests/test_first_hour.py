"""What a new user meets first: the version, the metric list, missing extras, the built-in
models' limits, the word model's unknown words, class names and ranks, overlay colour bars."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import faithmap
from faithmap.cli import app
from faithmap.cli.common import builtin_model_note
from faithmap.core.explanation import Explanation
from faithmap.text import make_sentences, make_tokenizer, tokenize
from faithmap.text.synthetic import VOCABULARY

runner = CliRunner()


def one_error_line(output: str) -> str:
    """The one ``error:`` line, which ends the output; no traceback."""
    lines = output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in output, output
    return errors[0]


# ----------------------------------------------------------------- the built-in word model
def test_word_tokenizer_splits_as_the_hugging_face_word_level_tokenizer() -> None:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel

    reference = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCABULARY)}, unk_token="[UNK]"))
    reference.normalizer = normalizers.Lowercase()
    reference.pre_tokenizer = pre_tokenizers.Whitespace()
    ours = make_tokenizer()
    texts = ["The movie was DULL, very dull!!", "  it's a   film... (superb)", "naïve café 12x"]
    for text in texts:
        expected = reference.encode(text)
        encoding = ours(text, return_offsets_mapping=True)
        assert encoding["input_ids"] == expected.ids
        assert encoding["offset_mapping"] == [tuple(pair) for pair in expected.offsets]
        assert ours.convert_ids_to_tokens(encoding["input_ids"]) == expected.tokens


def test_unknown_words_are_the_tokens_read_as_unk() -> None:
    tokens = tokenize(make_tokenizer(), "The plot was dull, zany")
    assert tokens.words == ["The", "plot", "was", "dull", ",", "zany"]
    assert tokens.unknown_words == [3, 4, 5]
    assert [tokens.tokens[i] for i in range(len(tokens)) if tokens.unknown[i]] == ["[UNK]"] * 3


def test_builtin_word_model_runs_without_transformers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for package in ("transformers", "tokenizers"):
        monkeypatch.setitem(sys.modules, package, None)
    args = ["explain", "--text", "the plot was superb", "--method", "saliency"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "text-saliency.html").is_file()


def test_text_output_names_classes_and_marks_unknown_words(tmp_path: Path) -> None:
    args = ["explain", "--text", "the plot was dull but superb", "--out", str(tmp_path)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    # "superb" is a positive deciding word of the synthetic task the model solves.
    assert "predicted: positive (class 1), probability" in result.output
    assert "explained: positive (class 1), by integrated_gradients" in result.output
    scored = dict(re.findall(r"(\w+)\[([^\]]+)\]", result.output))
    assert scored["dull"].endswith(", unknown") and scored["but"].endswith(", unknown")
    assert not scored["superb"].endswith("unknown") and not scored["plot"].endswith("unknown")
    assert "unknown: 'dull', 'but' are not in the model's vocabulary" in result.output
    page = (tmp_path / "text-integrated_gradients.html").read_text()
    assert "predicted: positive (class 1)" in page
    assert page.count('<sup class="unknown">?</sup>') == 2
    assert re.search(r"underline dotted\" title=\"[^\"]*unknown[^\"]*\">dull</span>", page)


def test_text_target_is_named_in_words(tmp_path: Path) -> None:
    sentence = make_sentences(4, seed=5)
    row = int(sentence.labels.argmax())  # a positive sentence, explained for "negative"
    args = ["explain", "--text", sentence.texts[row], "-t", "0", "--method", "saliency"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "predicted: positive (class 1)" in result.output
    assert "explained: negative (class 0), by saliency" in result.output
    assert "attribution to negative (class 0)" in result.output


def test_occlusion_on_text_writes_files_named_occlusion(tmp_path: Path) -> None:
    args = ["explain", "--text", "a boring film", "--method", "occlusion", "--out", str(tmp_path)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "text-occlusion.html",
        "text-occlusion.safetensors",
    ]
    assert "occlusion on a text removes one region at a time: it runs as feature_ablation" in (
        result.output
    )
    assert Explanation.load(tmp_path / "text-occlusion.safetensors").method == "feature_ablation"


def test_lima_ranks_on_text_are_labelled_steps(tmp_path: Path) -> None:
    text = "the plot was boring and the cast dreadful"
    args = ["explain", "--text", text, "--method", "lima", "--out", str(tmp_path)]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    printed = re.findall(r"(\w+)\[#(\d+)\]", result.output)
    assert [word for word, _ in printed] == text.split()
    ranking = Explanation.load(tmp_path / "text-lima.safetensors").ranking
    assert ranking is not None
    # Word i is region i: its printed step is its place in the saved ranking, counted from 1.
    expected = {int(region): step + 1 for step, region in enumerate(ranking[0])}
    assert [int(step) for _, step in printed] == [expected[i] for i in range(len(printed))]
    assert "[#k]: the step at which lima chose the word's region" in result.output
    assert "#1 first, the most important" in result.output


def test_coloured_terminal_text_keeps_colours_and_escapes_control_characters() -> None:
    from faithmap.text import explain_text, load_word_cnn, render_terminal

    explained = explain_text(
        load_word_cnn(), make_tokenizer(), "superb \x1b[2J film", method="saliency"
    )
    coloured = render_terminal(explained)
    assert coloured.count("\x1b[48;2;") == len(explained.words)
    assert "\x1b[2J" not in coloured and "\\x1b" in coloured


def test_predicted_probabilities_are_the_models() -> None:
    from faithmap.text import explain_text, load_word_cnn

    model = load_word_cnn()
    tokenizer = make_tokenizer()
    explained = explain_text(model, tokenizer, "an awful ending", method="saliency")
    ids = torch.tensor([tokenizer("an awful ending")["input_ids"]])
    with torch.no_grad():
        expected = model(ids).softmax(1)[0]
    torch.testing.assert_close(explained.probabilities, expected)
    assert explained.predicted == 0 and explained.class_name(0) == "negative (class 0)"
    named = explain_text(model, tokenizer, "an awful ending", class_names=["bad", "good"])
    assert named.class_name(1) == "good (class 1)" and named.class_name(2) == "class 2"


# ------------------------------------------------------------------ version and metrics
def test_version_prints_the_installed_version() -> None:
    from importlib import metadata

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"faithmap {metadata.version('faithmap')}\n"
    assert re.fullmatch(r"faithmap \d+\.\d+\.\d+\S*\n", result.output)


def test_metrics_are_plain_text_and_each_says_which_way_is_better() -> None:
    result = runner.invoke(app, ["metrics"], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "``" not in result.output and ":func:" not in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    for name, spec in faithmap.metrics.METRICS.items():
        better = "higher is better" if spec.higher_is_better else "lower is better"
        if spec.higher_is_better is None:
            continue  # checked against the metrics' own results below
        assert better in lines[name], lines[name]
        assert lines[name].count("is better") == 1, lines[name]


def test_metrics_direction_of_curves_is_the_one_their_results_report() -> None:
    from faithmap.metrics import deletion, insertion

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    x, saliency = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    output = runner.invoke(app, ["metrics"], terminal_width=250).output
    lines = {line.split()[0]: line for line in output.splitlines()}
    for metric in (insertion, deletion):
        result = metric(net, x, saliency, steps=2, fill=0.0)
        better = "higher is better" if result.higher_is_better else "lower is better"
        assert f"{better}  " in lines[result.metric] and "lerf reverses it" in lines[result.metric]


# --------------------------------------------------------------- missing optional packages
@pytest.mark.parametrize(
    ("missing", "args", "install"),
    [
        ("transformers", ["explain", "--text", "a fine film", "--model", "hf:any"], "[text]"),
        ("transformers", ["explain", "--text", "a fine film", "--model", "my-bert"], "[text]"),
        ("onnxruntime", ["explain", "--model", "model.onnx"], "[onnx]"),
        ("transformers", ["explain", "--model", "hf:any/vit"], "[text]"),
        ("timm", ["explain", "--model", "timm:resnet18"], "pip install timm"),
        ("torchvision", ["explain", "--model", "torchvision:resnet18"], "pip install torchvision"),
        ("ray", ["bench", "--executor", "ray", "--samples", "1"], "faithmap[ray]"),
    ],
)
def test_a_missing_optional_package_is_one_error_line_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str, args: list[str], install: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as if it were not installed
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")], terminal_width=400)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert install in line, line


# ------------------------------------------------------------- built-in models and photos
def test_a_photo_with_a_builtin_model_says_once_what_the_model_knows(tmp_path: Path) -> None:
    from matplotlib.image import imsave

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, shape in (("wide", (40, 90, 3)), ("tall", (90, 40, 3))):
        imsave(folder / f"{name}.png", torch.rand(shape).numpy())
    args = ["explain", str(folder), "--method", "saliency", "--out", str(tmp_path / "out")]
    args += ["--batch-size", "16"]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, result.output
    for fact in ("'cnn' knows only 6 synthetic shapes", "disc", "64x64", "aspect ratio"):
        assert fact in notes[0]
    assert "--model" in notes[0]
    assert "fitted into 64x64 and padded" in builtin_model_note("cnn", (64, 64), True)


def test_the_builtin_sample_needs_no_note(tmp_path: Path) -> None:
    args = ["explain", "--method", "saliency", "--out", str(tmp_path), "--batch-size", "16"]
    result = runner.invoke(app, args, terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "note: " not in result.output


# ---------------------------------------------------------------------- overlay colour bars
def test_overlay_colour_bar_says_attribution_or_rank() -> None:
    from faithmap.viz import RANK_LABEL, overlay

    image, values = torch.rand(3, 8, 8), torch.randn(1, 8, 8)
    assert overlay(image, values).axes[2].get_ylabel() == "attribution"
    ranks = torch.arange(4.0).repeat_interleave(16).view(1, 8, 8)  # four regions, R - rank
    bar = overlay(image, ranks, ranked=True).axes[2]
    assert bar.get_ylabel() == RANK_LABEL == "rank (chosen first = highest)"
    ticks = [tick for tick in bar.get_yticks() if 0.0 <= tick <= 3.0]
    assert ticks and all(float(tick).is_integer() for tick in ticks)


def test_explain_draws_subset_selection_maps_as_ranks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from faithmap.viz import save_overlay as original

    drawn: list[bool] = []

    def recording(*args: Any, ranked: bool = False, **kwargs: Any) -> Path:
        drawn.append(ranked)
        return original(*args, ranked=ranked, **kwargs)

    monkeypatch.setattr("faithmap.cli.explain.save_overlay", recording)
    for method, params in (("lima", ["-p", "regions=patches:32"]), ("saliency", [])):
        args = ["explain", "--method", method, *params, "--out", str(tmp_path)]
        args += ["--batch-size", "16"]
        result = runner.invoke(app, args, terminal_width=400)
        assert result.exit_code == 0, result.output
    assert drawn == [True, False]
