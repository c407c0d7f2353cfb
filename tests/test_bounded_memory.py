"""Memory is bounded by one chunk, not by the folder or the image's full resolution.

Peaks are measured with ``resource`` (``ru_maxrss``) in fresh processes, so nothing that this
test process loaded counts. Those processes ask glibc to map every buffer above 4 MiB on its own
(``MALLOC_MMAP_THRESHOLD_``), so a freed batch goes back to the system: with glibc's adaptive
threshold, in about one run of three the heap kept every freed 12 MiB batch, and the peak
measured the allocator's fragmentation, not what faithmap holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from faithmap import Explanation
from faithmap.core.cost import Cost
from faithmap.core.explanation_stream import ExplanationStream

MIB = 2**20

EXPLAIN_AND_REPORT_PEAK = """
import resource, sys
from typer.testing import CliRunner
from faithmap.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
assert result.exit_code == 0, result.output
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

STREAM_AND_REPORT_PEAK = """
import resource, sys
import torch
from faithmap import Explanation
from faithmap.core.cost import Cost
from faithmap.core.explanation_stream import ExplanationStream

def batch(i):
    values = torch.rand(4, 3, 512, 512, generator=torch.Generator().manual_seed(i))
    return Explanation(values, "saliency", {}, torch.full((4,), i), Cost(4, 4, 0.1))

batch(0)  # the first batch's allocations count in the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with ExplanationStream(sys.argv[1]) as stream:
    for i in range(48):  # 48 x 12 MiB = 576 MiB of attributions in all
        stream.add(batch(i))
    stream.close(sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after)
"""


def _peaks_kib(script: str, *args: str) -> list[int]:
    """Run ``script`` in a fresh Python and return the numbers it printed last (KiB)."""
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "4194304"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [int(value) for value in done.stdout.strip().splitlines()[-1].split()]


def test_an_8000_pixel_image_costs_its_8_bit_decoding_not_a_float_copy(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8000, 8000), (200, 30, 30)).save(tmp_path / "huge.png")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "small.png")
    peaks = {}
    for name in ("small", "huge"):
        args = ["explain", str(tmp_path / f"{name}.png"), "--method", "saliency"]
        (peaks[name],) = _peaks_kib(EXPLAIN_AND_REPORT_PEAK, *args, "--out", str(tmp_path / name))
    extra = (peaks["huge"] - peaks["small"]) * 1024
    # decoding 8000 x 8000 RGB takes 183 MiB; one float32 copy of it alone would take 732 MiB
    assert extra < 400 * MIB, f"{extra / MIB:.0f} MiB more than for a 64 x 64 image"


def test_a_stream_of_576_mib_of_attributions_holds_one_batch(tmp_path: Path) -> None:
    before, after = _peaks_kib(STREAM_AND_REPORT_PEAK, str(tmp_path), str(tmp_path / "all.st"))
    grown = (after - before) * 1024
    assert grown < 100 * MIB, f"the peak grew by {grown / MIB:.0f} MiB"
    loaded = Explanation.load(tmp_path / "all.st")
    assert loaded.attributions.shape == (192, 3, 512, 512)
    first = torch.rand(4, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    last = torch.rand(4, 3, 512, 512, generator=torch.Generator().manual_seed(47))
    assert torch.equal(loaded.attributions[:4], first)
    assert torch.equal(loaded.attributions[-4:], last)
    assert (loaded.cost.forward, loaded.cost.backward) == (192, 192)
    assert abs(loaded.cost.seconds - 4.8) < 1e-9
    assert list(tmp_path.glob(".faithmap-stream-*")) == []  # the temporary file is gone


def _explanation(seed: int, rows: int, *, ranked: bool) -> Explanation:
    generator = torch.Generator().manual_seed(seed)
    return Explanation(
        attributions=torch.rand(rows, 1, 6, 5, generator=generator),
        method="smdl",
        config={"regions": "patches:2", "seed": seed},
        target=torch.arange(rows) + seed,
        cost=Cost(rows * 10, 0, 0.5, 0.25),
        ranking=torch.randperm(4, generator=generator).repeat(rows, 1) if ranked else None,
        model={"outputs": "logits"},
    )


def test_a_stream_reads_back_as_the_saved_concatenation(tmp_path: Path) -> None:
    parts = [_explanation(seed, rows, ranked=True) for seed, rows in ((0, 3), (1, 1), (2, 4))]
    with ExplanationStream(tmp_path) as stream:
        for part in parts:
            stream.add(part)
        streamed = Explanation.load(stream.close(tmp_path / "streamed.safetensors"))
    assert stream.samples == 8
    whole = Explanation(
        attributions=torch.cat([part.attributions for part in parts]),
        method="smdl",
        config=parts[0].config,
        target=torch.cat([part.target for part in parts if part.target is not None]),
        cost=parts[0].cost + parts[1].cost + parts[2].cost,
        ranking=torch.cat([part.ranking for part in parts if part.ranking is not None]),
        model=parts[0].model,
    )
    saved = Explanation.load(whole.save(tmp_path / "saved.safetensors"))
    assert torch.equal(streamed.attributions, saved.attributions)
    assert streamed.target is not None and saved.target is not None
    assert torch.equal(streamed.target, saved.target)
    assert streamed.ranking is not None and saved.ranking is not None
    assert torch.equal(streamed.ranking, saved.ranking)
    assert (streamed.method, streamed.config, streamed.model, streamed.cost) == (
        saved.method,
        saved.config,
        saved.model,
        saved.cost,
    )


def test_a_batch_without_ranking_drops_the_rankings(tmp_path: Path) -> None:
    with ExplanationStream(tmp_path) as stream:
        stream.add(_explanation(0, 2, ranked=True))
        stream.add(_explanation(1, 2, ranked=False))
        loaded = Explanation.load(stream.close(tmp_path / "mixed.safetensors"))
    assert loaded.ranking is None and loaded.attributions.shape[0] == 4
