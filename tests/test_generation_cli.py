"""``faithmap explain --generate``: printed steps, the HTML heatmap and its escaping, errors.

The printed top features are checked against :func:`explain_generation` run directly on the
same model, prompt and settings; the continuation of a copy prompt against the task's answer
(the shipped GPT copies at 1.000 held-out accuracy).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from typer.testing import CliRunner

from faithmap.cli import app
from faithmap.generation import explain_generation, load_gpt
from faithmap.generation.tasks import make_tokenizer

runner = CliRunner()
COPY = "copy 3 a 7 b >"
STEP = re.compile(r'^step (\d+) "(.*)" \(log p (\S+)\): (.*)$')
FEATURE = re.compile(r'"([^"]*)" ([^,\s]+)')


def _steps(output: str) -> list[tuple[str, list[tuple[str, float]]]]:
    """Each printed step's token and its (feature, score) pairs."""
    found = []
    for line in output.splitlines():
        match = STEP.match(line)
        if match:
            pairs = [(name, float(v)) for name, v in FEATURE.findall(match.group(4))]
            found.append((match.group(2), pairs))
    return found


def test_copy_prompt_prints_each_step_with_its_top_three_features(tmp_path: Path) -> None:
    args = ["explain", "--generate", COPY, "--max-new-tokens", "4", "--batch-size", "8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "continuation (greedy, feature_ablation over 6 words): 3 a 7 b" in result.output
    assert "wrote" not in result.output  # no --out, no file
    direct = explain_generation(
        load_gpt(), COPY, tokenizer=make_tokenizer(), max_new_tokens=4, batch_size=8
    )
    steps = _steps(result.output)
    assert [token for token, _ in steps] == ["3", "a", "7", "b"]
    for row, (_, pairs) in zip(direct.attributions, steps, strict=True):
        order = row.argsort(descending=True)[:3].tolist()
        assert [name for name, _ in pairs] == [direct.feature_names[f] for f in order]
        printed = torch.tensor([value for _, value in pairs], dtype=torch.float64)
        torch.testing.assert_close(printed, row[order].double(), rtol=5e-3, atol=0)
    assert re.search(r"^cost: 12 forward \+ 0 backward passes", result.output, re.MULTILINE)


def test_heatmap_escapes_every_text_and_loads_nothing(tmp_path: Path) -> None:
    prompt = 'a <script>alert("x")</script> & b'
    page = tmp_path / "new" / "heat.html"
    args = ["explain", "--generate", prompt, "--max-new-tokens", "2", "--out", str(page)]
    result = runner.invoke(app, [*args, "--method", "lime", "--seed", "3", "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert f"wrote {page}" in result.output
    assert "reads <, script, alert" in result.output  # the built-in GPT's unknown words
    document = page.read_text(encoding="utf-8")
    assert "<script" not in document and "</script" not in document
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in document
    assert "<th>&amp;</th>" in document and " &amp; b" in document
    for external in ("http:", "https:", "src=", "<link", "@import", "url("):
        assert external not in document
    rows = re.findall(r"<tr>(.*?)</tr>", document)
    assert len(rows) == 1 + 2  # the header and one row per generated step
    words = prompt.split()
    assert rows[0].count("<th>") == 2 + len(words)  # step, target, then one per prompt word
    for row in rows[1:]:
        assert row.count("<td") == 1 + len(words)  # the target's value, then the attributions


def test_seed_reaches_the_method() -> None:
    base = ["explain", "--generate", COPY, "--max-new-tokens", "2", "--method", "kernel_shap"]
    base += ["--param", "n_samples=12", "--batch-size", "8"]
    by_option = runner.invoke(app, [*base, "--seed", "5"])
    by_param = runner.invoke(app, [*base, "--param", "seed=5"])
    other = runner.invoke(app, [*base, "--seed", "6"])
    for result in (by_option, by_param, other):
        assert result.exit_code == 0, result.output
    assert _steps(by_option.output) == _steps(by_param.output)
    assert _steps(by_option.output) != _steps(other.output)


def _hf_directory(folder: Path) -> None:
    """A 2-layer GPT-2 with random weights and a word-level fast tokenizer, saved in ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "<eos>", *[f"w{i}" for i in range(29)]]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer: Any = transformers.PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=16, n_head=2, vocab_size=len(words), n_positions=32, eos_token_id=2
    )
    model: Any = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_hugging_face_directory(tmp_path: Path) -> None:
    _hf_directory(tmp_path)
    args = ["explain", "--generate", "w3 w17 w8 w4", "--model", f"hf:{tmp_path}"]
    result = runner.invoke(app, [*args, "--max-new-tokens", "3", "--features", "tokens"])
    assert result.exit_code == 0, result.output
    steps = _steps(result.output)
    assert len(steps) == 3
    assert all(len(pairs) == 3 for _, pairs in steps)
    assert {name for _, pairs in steps for name, _ in pairs} <= {"w3", "w17", "w8", "w4"}
    assert "note:" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generate", ""], "--generate needs a prompt"),
        (["--generate", "   "], "--generate needs a prompt"),
        (["--generate", COPY, "--method", "nope"], "No generation method is named 'nope'"),
        (["--generate", COPY, "--model", "hf:no/such/dir"], "which is not a directory"),
        (["--generate", COPY, "--model", "cnn"], "must be gpt"),
        (["--max-new-tokens", "3"], "--max-new-tokens applies only to --generate"),
        (["--features", "words", "--seed", "1"], "--features, --seed apply only to --generate"),
        (["--generate", COPY, "--text", "a film"], "--text does not apply to --generate"),
        (["--generate", COPY, "image.png"], "an input file or folder does not apply"),
        (["--generate", COPY, "--out", "folder"], "ending in .html"),
        (["--generate", COPY, "--max-new-tokens", "0"], "at least 1"),
        (["--generate", COPY, "--max-new-tokens", "40"], "must be at most 26"),
        (["--generate", COPY, "--features", "letters"], "tokens, words, sentences"),
        (["--generate", COPY, "--seed", "1"], "'feature_ablation' draws none"),
        (["--generate", COPY, "--method", "lime", "--seed", "1", "-p", "seed=2"], "once"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["explain", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]


def test_out_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "heat.html"
    folder.mkdir()
    result = runner.invoke(app, ["explain", "--generate", COPY, "--out", str(folder)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: --out {str(folder)!r} is a folder. Give an .html file name."
    ]
