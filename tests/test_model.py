"""Model: batching, the cost ledger, devices, activations and callables."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import faithmap
from conftest import TinyNet
from faithmap import Model
from faithmap.core.batching import fastest_batch_size
from faithmap.core.targets import Target


def test_outputs_match_the_module_in_eval_mode(tiny_net: TinyNet, images: torch.Tensor) -> None:
    tiny_net.train()
    outputs = Model(tiny_net, batch_size=2).outputs(images)
    assert tiny_net.training
    tiny_net.eval()
    torch.testing.assert_close(outputs, tiny_net(images))


def test_eval_mode_can_be_turned_off(tiny_net: TinyNet, images: torch.Tensor) -> None:
    tiny_net.train()
    torch.manual_seed(0)
    first = Model(tiny_net, batch_size=5, eval_mode=False).outputs(images)
    torch.manual_seed(1)
    second = Model(tiny_net, batch_size=5, eval_mode=False).outputs(images)
    assert not torch.equal(first, second)  # dropout was active


def test_ledger_counts_rows(tiny_net: TinyNet, images: torch.Tensor) -> None:
    model = Model(tiny_net, batch_size=2)
    with model.ledger.track() as tracker:
        model.outputs(images)
        model.score_rows(
            5,
            3,
            lambda s, _: images[s],
            Target(classes=torch.zeros(5).long()),
            device=images.device,
        )
    assert tracker.cost.forward == 5 + 15
    assert tracker.cost.backward == 0
    assert tracker.cost.seconds > 0


def test_gradient_rows_count_forward_and_backward(tiny_net: TinyNet, images: torch.Tensor) -> None:
    model = Model(tiny_net, batch_size=4)
    seen: list[int] = []
    with model.ledger.track() as tracker:
        model.gradient_rows(
            5,
            2,
            lambda s, _: images[s],
            Target(classes=torch.zeros(5).long()),
            lambda s, i, rows, grads: seen.append(rows.shape[0]),
            device=images.device,
        )
    assert seen == [4, 4, 2]
    assert (tracker.cost.forward, tracker.cost.backward) == (10, 10)


def test_score_rows_match_direct_softmax(tiny_net: TinyNet, images: torch.Tensor) -> None:
    model = Model(tiny_net, batch_size=3)
    target = Target(classes=torch.tensor([0, 1, 2, 3, 0]))
    scores = model.score_rows(
        5, 2, lambda s, k: images[s] * (k + 1).view(-1, 1, 1, 1), target, device=images.device
    )
    for k in range(2):
        expected = tiny_net(images * (k + 1)).softmax(1)[torch.arange(5), target.classes]
        torch.testing.assert_close(scores[:, k], expected)


def test_probabilities_are_not_softmaxed_again() -> None:
    probabilities = torch.tensor([[0.2, 0.8]])
    model = Model(lambda x: probabilities.expand(x.shape[0], 2), outputs="probabilities")
    torch.testing.assert_close(
        model.outputs(torch.zeros(3, 4), activation="softmax"), probabilities.expand(3, 2)
    )


def test_numpy_callable() -> None:
    weights = np.arange(8.0, dtype=np.float32).reshape(4, 2)
    model = Model(lambda x: x.numpy() @ weights, batch_size=2)
    x = torch.ones(3, 4)
    torch.testing.assert_close(model.outputs(x), torch.tensor([[12.0, 16.0]]).expand(3, 2))
    assert not model.is_differentiable and model.device is None


def test_batch_size_is_measured_once_per_module_and_shape(
    tiny_net: TinyNet, images: torch.Tensor
) -> None:
    first = Model(tiny_net)
    first.outputs(images)  # 5 rows: one call, nothing measured
    assert first.measured_batch_sizes == {} and first.ledger.calibration_seconds == 0
    job = images.repeat(4, 1, 1, 1)  # 20 rows
    first.outputs(job)
    measured = dict(first.measured_batch_sizes)
    ((size, covered),) = measured.values()
    assert 1 <= size <= 32 and covered in (32, 1024)  # timed only up to the job's 20 rows
    assert first.ledger.calibration_seconds > 0
    second = Model(tiny_net)
    second.outputs(job)
    assert second.measured_batch_sizes == measured  # shared for the same module, not measured again
    assert second.ledger.calibration_seconds == 0


def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_fastest_batch_size_picks_the_lowest_time_per_sample() -> None:
    def cost_model(batch: torch.Tensor) -> None:
        # per-sample time is lowest at 16 and grows by half a unit per doubling away from it
        busy_wait(2e-5 * (1 + 0.5 * abs(np.log2(batch.shape[0]) - 4)) * batch.shape[0])

    best, timings = fastest_batch_size(cost_model, torch.zeros(1, 2), min_seconds=0.0)
    assert best == 16
    assert max(timings) == 64  # stopped after two sizes without a gain above noise (5%)


def test_fastest_batch_size_times_the_finalists_again_in_turns() -> None:
    calls: dict[int, int] = {}

    def noisy_during_the_scan(batch: torch.Tensor) -> None:
        # best at 16, but the machine is busy during 16's turn in the scan (its first 4 calls)
        size = batch.shape[0]
        calls[size] = calls.get(size, 0) + 1
        busy = 1.6 if size == 16 and calls[size] <= 4 else 1.0
        busy_wait(busy * 2e-5 * (1 + 0.5 * abs(np.log2(size) - 4)) * size)

    best, timings = fastest_batch_size(
        noisy_during_the_scan, torch.zeros(1, 2), min_seconds=0.0, max_repeats=5
    )
    assert calls[16] > 4  # timed again after the scan
    assert best == 16 and min(timings, key=timings.__getitem__) == 16


def test_fastest_batch_size_prefers_the_largest_of_equal_speed() -> None:
    def flat_then_slow(batch: torch.Tensor) -> None:
        size = batch.shape[0]
        busy_wait(2e-5 * size * (1.0 if size <= 32 else 2.0))

    best, timings = fastest_batch_size(
        flat_then_slow, torch.zeros(1, 2), min_seconds=0.0, tolerance=1.5, patience=6
    )
    assert best == 32 and max(timings) == 64


def test_invalid_batch_size() -> None:
    from faithmap import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"'batch_size' parameter of Model"):
        Model(torch.nn.Identity(), batch_size=0)


def test_gradient_methods_work_under_no_grad(tiny_net: TinyNet, images: torch.Tensor) -> None:
    """Captum's metrics call explanation functions under torch.no_grad; gradients still flow."""
    expected = faithmap.explain(tiny_net, images, method="saliency").attributions
    with torch.no_grad():
        got = faithmap.explain(tiny_net, images, method="saliency").attributions
    torch.testing.assert_close(got, expected)
