"""Masks and perturbations are composed on the input's device: no hot path copies to the host.

A :class:`~torch.overrides.TorchFunctionMode` counts every device-to-host transfer or sync a
method makes through torch (``.cpu()``, ``.numpy()``, ``.tolist()``, ``.item()``, and the
implicit ones of ``bool()``, ``int()``, ``float()`` on a tensor). Two facts are checked on every
perturbation and sampling method:

- the count does not grow with the method's budget (masks, samples, permutations, steps) or
  with the number of batches: nothing goes to the host once per perturbation or per batch;
- no tensor as large as an image plane goes to the host, except in two functions that run
  once per call: the superpixel partition (scikit-image's SLIC runs on host arrays) and the
  content hash that records a user-given tensor (a background set) in the explanation's
  config.

On a CPU-only machine ``.to(device)`` is a no-op that cannot be told from a copy, so host-to-
device copies are not counted here; on a CUDA machine the syncs counted here are the ones
that stall the device.
"""

from __future__ import annotations

import collections
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from torch import Tensor
from torch.overrides import TorchFunctionMode

import faithmap
from conftest import TinyNet, light_params
from faithmap import Model
from faithmap.evaluation import evaluate

HOST_CALLS = frozenset(
    {"cpu", "numpy", "tolist", "item", "__bool__", "__int__", "__float__", "__index__"}
)
"""Tensor operations that move data to the host or wait for the device."""
ONCE_PER_CALL = frozenset(
    {("faithmap/core/regions.py", "slic"), ("faithmap/methods/gradient_shap.py", "describe_tensor")}
)
"""The functions allowed to move an image-sized tensor to the host, once per call."""


class HostTransfers(TorchFunctionMode):
    """Counts host transfers by the faithmap function that made them, and the largest size
    each function moved."""

    def __init__(self) -> None:
        super().__init__()
        self.count: collections.Counter[tuple[str, str]] = collections.Counter()
        self.largest: dict[tuple[str, str], int] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        name = getattr(func, "__name__", "")
        if name in HOST_CALLS and args and isinstance(args[0], Tensor):
            frames = [f for f in traceback.extract_stack() if "/faithmap/" in f.filename]
            where = (
                (
                    frames[-1].filename[frames[-1].filename.rindex("/faithmap/") + 1 :],
                    frames[-1].name,
                )
                if frames
                else ("outside faithmap", "")
            )
            self.count[where] += 1
            self.largest[where] = max(self.largest.get(where, 0), args[0].numel())
        return func(*args, **(kwargs or {}))


BUDGETS: dict[str, tuple[str, int]] = {
    "rise": ("n_masks", 48),
    "sobol": ("n_design", 8),
    "hsic": ("n_design", 24),
    "lime": ("n_samples", 32),
    "kernel_shap": ("n_samples", 32),
    "shapley_sampling": ("n_permutations", 4),
    "integrated_gradients": ("steps", 8),
    "smoothgrad": ("n_samples", 4),
    "gradient_shap": ("n_samples", 4),
}
"""Each sampling method's budget parameter and a small value of it (doubled in the test)."""


def _transfers(run: Callable[[], object]) -> HostTransfers:
    counter = HostTransfers()
    with counter:
        run()
    return counter


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_host_transfers_do_not_grow_with_the_budget_or_the_batches(
    name: str, tiny_net: TinyNet, images: Tensor
) -> None:
    parameter, small = BUDGETS[name]
    model = Model(tiny_net, batch_size=8)  # several batches even at the small budget
    counts = []
    for budget in (small, 2 * small):
        params = {**light_params(name), parameter: budget}
        with HostTransfers() as counter:
            faithmap.explain(model, images, method=name, target=0, **params)
        counts.append(sum(counter.count.values()))
    assert counts[0] == counts[1]


@pytest.mark.parametrize("name", [*sorted(BUDGETS), "occlusion", "feature_ablation", "score_cam"])
def test_no_image_sized_tensor_goes_to_the_host_but_slic_input(
    name: str, tiny_net: TinyNet, images: Tensor
) -> None:
    counter = _transfers(
        lambda: faithmap.explain(tiny_net, images, method=name, target=0, **light_params(name))
    )
    plane = images.shape[-2] * images.shape[-1]
    large = {where: n for where, n in counter.largest.items() if n >= plane}
    assert set(large) <= ONCE_PER_CALL, large
    assert all(counter.count[where] <= len(images) for where in large)


def test_superpixels_are_the_counted_exception(tiny_net: TinyNet, images: Tensor) -> None:
    counter = _transfers(
        lambda: faithmap.explain(
            tiny_net, images, method="kernel_shap", target=0, regions="slic:9", n_samples=16
        )
    )
    plane = images.shape[-2] * images.shape[-1]
    large = {where for where, n in counter.largest.items() if n >= plane}
    assert large == {("faithmap/core/regions.py", "slic")}


@pytest.mark.parametrize("metric", ["insertion", "deletion"])
def test_curve_metrics_make_no_host_transfer_per_step(
    metric: str, tiny_net: TinyNet, images: Tensor
) -> None:
    explanation = faithmap.explain(tiny_net, images, method="saliency", target=0)
    model = Model(tiny_net, batch_size=8)
    counts = []
    for steps in (8, 16):
        with HostTransfers() as counter:
            evaluate(
                model, images, explanation, metrics=[metric], params={metric: {"steps": steps}}
            )
        counts.append(sum(counter.count.values()))
    assert counts[0] == counts[1]
