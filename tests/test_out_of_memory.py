"""Out-of-memory back-off (:mod:`faithmap.core.memory`), on the CPU.

The stand-in below is a test double for the allocator, not for a user's model: a small CNN
whose forward pass raises ``torch.cuda.OutOfMemoryError`` (or the generic ``RuntimeError``
text) whenever a batch holds more rows than its ``limit``, as a GPU does above the batch that
fits. Results must equal those of a run that never ran out of memory.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import faithmap
from faithmap import Model
from faithmap.core.batching import MeasuredSizes, fastest_batch_size
from faithmap.core.memory import halved, is_out_of_memory
from faithmap.errors import ModelError


class Allocator(nn.Module):
    """A CNN that runs out of memory above ``limit`` rows per call; records every call size."""

    def __init__(self, limit: int, generic: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, 3),
        )
        self.limit, self.generic = limit, generic
        self.calls: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            if self.generic:
                raise RuntimeError("CUDA error: out of memory")
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {x.shape[0]} rows."
            )
        out: Tensor = self.net(x)
        return out


def _x(n: int = 2) -> Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_recognises_allocator_errors_only() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))
    assert not is_out_of_memory(ModelError("The model ran out of memory at batch_size=4"))


def test_halving_keeps_whole_units_while_it_can() -> None:
    assert halved(64, 8) == (32, 8)
    assert halved(24, 8) == (8, 8)
    assert halved(8, 8) == (4, 1)
    assert halved(2, 1) == (1, 1)


@pytest.mark.parametrize("generic", [False, True])
def test_the_batch_size_scan_stops_at_the_first_size_that_does_not_fit(generic: bool) -> None:
    net = Allocator(limit=20, generic=generic)
    sample = _x(1)

    def run(batch: Tensor) -> object:
        with torch.inference_mode():
            return net(batch)

    size, timings = fastest_batch_size(run, sample, candidates=(1, 2, 4, 8, 16, 32, 64))
    assert size <= 16 and max(timings) == 16  # 32 ran out of memory: nothing above was tried
    assert 64 not in net.calls and net.calls.count(32) == 1


def test_a_measured_model_within_a_memory_limit_gives_the_same_scores() -> None:
    x = _x(2)
    reference = faithmap.explain(
        Model(Allocator(limit=10**6), batch_size=7), x, method="rise", n_masks=96, seed=0
    )
    net = Allocator(limit=20)
    exp = faithmap.explain(Model(net), x, method="rise", n_masks=96, seed=0)
    torch.testing.assert_close(exp.attributions, reference.attributions, rtol=1e-5, atol=1e-6)


def test_a_measured_size_that_stops_fitting_backs_off_retries_and_remembers() -> None:
    net = Allocator(limit=10**6)
    model = Model(net)
    x = _x(2)
    sizes = MeasuredSizes.of(net)
    assert sizes.size_for(_x(1), True, 128, lambda candidates: 64) == 64  # "measured": 64 rows
    reference = faithmap.explain(model, x, method="integrated_gradients", steps=64)
    assert max(net.calls) == 64
    net.limit, net.calls = 8, []  # another process took the memory
    exp = faithmap.explain(model, x, method="integrated_gradients", steps=64)
    torch.testing.assert_close(exp.attributions, reference.attributions, rtol=1e-5, atol=1e-7)
    assert [c for c in net.calls if c > 8] == [64, 32, 16]  # halved until it fits, then kept
    assert exp.cost.forward == reference.cost.forward  # failed calls are not counted
    assert list(sizes.ceilings.values()) == [8]
    net.calls = []
    again = faithmap.explain(model, x, method="integrated_gradients", steps=64)
    assert max(net.calls) == 8  # the ceiling holds: no call runs out of memory again
    torch.testing.assert_close(again.attributions, reference.attributions, rtol=1e-5, atol=1e-7)


def test_occlusion_and_deletion_back_off_too() -> None:
    x = _x(1)
    plain = Model(Allocator(limit=10**6), batch_size=5)
    tight = Model(Allocator(limit=12))
    ref = faithmap.explain(plain, x, method="occlusion", window=2, stride=2)
    got = faithmap.explain(tight, x, method="occlusion", window=2, stride=2)
    torch.testing.assert_close(got.attributions, ref.attributions, rtol=1e-5, atol=1e-7)
    curve_ref = faithmap.metrics.deletion(plain, x, ref, steps=40)
    curve_got = faithmap.metrics.deletion(tight, x, ref, steps=40)
    torch.testing.assert_close(curve_got.curve, curve_ref.curve, rtol=1e-5, atol=1e-7)


def test_a_given_batch_size_that_does_not_fit_is_an_error_not_a_silent_change() -> None:
    model = Model(Allocator(limit=4), batch_size=16)
    with pytest.raises(ModelError, match=r"batch_size=16.*smaller batch_size"):
        faithmap.explain(model, _x(1), method="rise", n_masks=32, seed=0)


def test_a_model_that_cannot_take_one_row_is_an_error() -> None:
    with pytest.raises(ModelError, match="out of memory on a single row"):
        faithmap.explain(Model(Allocator(limit=0)), _x(1), method="rise", n_masks=32, seed=0)
