"""Rows ``(N, F)`` with feature groups, the memory guard, SLIC's region count, and the batch size
of scikit-learn estimators (issue 14, items 4-6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import faithmap
from faithmap.core.regions import Regions, make_regions, slic
from faithmap.errors import InvalidParameterError, ResourceError
from faithmap.methods.feature_ablation import FeatureAblation
from faithmap.methods.kernel_shap import KernelShap
from faithmap.methods.lime import Lime
from faithmap.tabular import explain_rows, tabular_model
from faithmap.tabular.model import EstimatorModel

WEIGHTS = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
ROW = torch.tensor([[2.0, 0.0, 1.0, -1.0, 0.5, 3.0]], dtype=torch.float64)
GROUPS = [[0, 1], [2, 3, 4]]  # column 5 is a group of its own
LABELS = torch.tensor([0, 0, 1, 1, 1, 2])


def linear_with_interaction(x: torch.Tensor) -> torch.Tensor:
    """``w . x + x0 * x2``: linear, plus one interaction across the first two groups."""
    return (x @ WEIGHTS + x[:, 0] * x[:, 2])[:, None]


# By hand, baseline 0, groups A = {0, 1}, B = {2, 3, 4}, C = {5}, x = ROW:
#   linear parts  A: 1*2 + 2*0 = 2    B: 3*1 + 4*(-1) + 5*0.5 = 1.5    C: 6*3 = 18
#   interaction x0*x2 = 2*1 = 2 needs A and B together: Shapley gives each half, 1.
SHAPLEY = [3.0, 3.0, 2.5, 2.5, 2.5, 18.0]
#   Leaving one group out drops its linear part and, for A or B, the whole interaction.
ABLATION = [4.0, 4.0, 3.5, 3.5, 3.5, 18.0]


def model() -> faithmap.Model:
    return faithmap.Model(linear_with_interaction, batch_size=64)


@pytest.mark.parametrize("regions", [GROUPS, LABELS, LABELS.numpy(), (range(2), (2, 3, 4))])
def test_kernel_shap_over_groups_is_the_exact_shapley_value_of_each_group(regions: Any) -> None:
    result = KernelShap(regions=regions).explain(model(), ROW, target=0)
    assert result.attributions.shape == (1, 6)
    assert result.cost.forward == 2**3  # three groups: every coalition enumerated
    expected = torch.tensor([SHAPLEY], dtype=torch.float64)
    torch.testing.assert_close(result.attributions, expected)


def test_sampled_kernel_shap_over_groups_keeps_members_equal() -> None:
    rows = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    groups = [[0, 3], [1, 4, 5]]  # column 2 alone
    result = KernelShap(regions=groups, exact=False, n_samples=12).explain(model(), rows, 0)
    values = result.attributions
    torch.testing.assert_close(values[:, 0], values[:, 3])
    torch.testing.assert_close(values[:, 1], values[:, 4])
    torch.testing.assert_close(values[:, 1], values[:, 5])
    # efficiency over the three groups: f(x) - f(0)
    total = values[:, 0] + values[:, 1] + values[:, 2]
    torch.testing.assert_close(total, linear_with_interaction(rows)[:, 0])


def test_feature_ablation_and_lime_honour_groups() -> None:
    ablation = FeatureAblation(regions=GROUPS).explain(model(), ROW, target=0)
    torch.testing.assert_close(ablation.attributions, torch.tensor([ABLATION], dtype=torch.float64))
    assert ablation.cost.forward == 3 + 1
    lime = Lime(regions=GROUPS, n_samples=64, activation="logits").explain(model(), ROW, 0)
    values = lime.attributions[0]
    assert values[0] == values[1] and values[2] == values[3] == values[4]
    assert len(set(values.tolist())) == 3


def test_windows_of_columns() -> None:
    regions = make_regions("windows:4", torch.zeros(2, 10))
    assert regions.count == 3 and regions.labels[1].tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert not regions.channel_axis
    result = KernelShap(regions="windows:2").explain(model(), ROW, target=0)
    # windows {0,1}, {2,3}, {4,5}: linear parts 2, -1, 2.5 + 18; the interaction splits 1/1
    expected = [3.0, 3.0, 0.0, 0.0, 20.5, 20.5]
    torch.testing.assert_close(result.attributions, torch.tensor([expected], dtype=torch.float64))


def test_columns_and_the_image_default_mean_every_column() -> None:
    for regions in ("columns", "pixels", "slic:25", "patches:8"):
        result = KernelShap(regions=regions, n_samples=64).explain(model(), ROW, target=0)
        assert result.cost.forward == 2**6
    columns = make_regions("columns", torch.zeros(3, 5))
    assert columns.count == 5 and columns.obtained.tolist() == [5, 5, 5]


def test_explain_rows_passes_groups_and_keeps_efficiency_over_a_background() -> None:
    rows = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    background = torch.randn(5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = explain_rows(
        linear_with_interaction,
        rows,
        method="kernel_shap",
        target=0,
        background=background,
        regions=GROUPS,
    )
    values = result.attributions
    torch.testing.assert_close(values[:, 0], values[:, 1])
    expected_total = (
        linear_with_interaction(rows)[:, 0] - linear_with_interaction(background).mean()
    )
    torch.testing.assert_close(values[:, [0, 2, 5]].sum(1), expected_total)


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([[0, 1], [1, 2]], "must not overlap"),
        ([[0, 9]], r"outside \[0, 6\)"),
        ([[0, 0]], "repeated columns"),
        (torch.tensor([0.0, 0.5, 1.0, 1.0, 2.0, 2.0]), "integer group per column"),
        (torch.tensor([0, 1, 2]), r"shape \(6,\)"),
        ("patches:4", "windows:K"),  # make_regions itself refuses image partitions on rows
    ],
)
def test_bad_groups_say_what_is_wrong(regions: Any, message: str) -> None:
    with pytest.raises(faithmap.FaithmapError, match=message):
        make_regions(regions, torch.zeros(2, 6))


def test_group_lists_are_validated_by_the_methods_constraints() -> None:
    KernelShap(regions=[[0, 1], [2]])
    bad: object
    for bad in ([[]], [[0.5]], [0, 1], "windows:0"):
        with pytest.raises(InvalidParameterError):
            KernelShap(regions=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the memory guard
GUARD = """
import json, resource, torch
torch.set_num_threads(1)  # a loaded 2-core machine slows small ops with 2 threads
import faithmap
import faithmap.methods.coalitions as coalitions
coalitions.available_memory = lambda device=None: 16 * 2**30  # the same on every machine
from faithmap.errors import ResourceError
from faithmap.methods.kernel_shap import KernelShap
from faithmap.methods.lime import Lime
from faithmap.methods.feature_ablation import FeatureAblation
model = faithmap.Model(lambda x: x.sum(1, keepdim=True), batch_size=64)
rows = torch.rand(2, 48_000)
def grown():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
messages = []
for method in (KernelShap(regions="columns"), Lime(regions="columns")):
    try:
        method.explain(model, rows, target=0)
    except ResourceError as err:
        messages.append(str(err))
guard_kb = grown()
grouped = KernelShap(regions="windows:480", n_samples=200).explain(model, rows, target=0)
ablation = FeatureAblation(regions="columns").explain(model, torch.rand(1, 16_000), target=0)
print(json.dumps({"messages": messages, "guard_kb": guard_kb, "runs_kb": grown(),
                  "grouped": list(grouped.attributions.shape),
                  "ablation": list(ablation.attributions.shape)}))
"""


def test_memory_guard_refuses_48000_columns_before_allocating() -> None:
    # A fixed mmap threshold makes glibc hand large freed blocks back at once, so the peak RSS
    # measures what is allocated, not what a fragmented heap keeps after many 4 MB batches.
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1000000"}
    done = subprocess.run(
        [sys.executable, "-c", GUARD],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env=environment,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    kernel_shap, lime = report["messages"]
    for message in (kernel_shap, lime):
        assert "48000 features" in message and "GB of memory" in message
        assert "regions=" in message and "n_samples" in message and "windows:" in message
    assert kernel_shap.startswith("KernelSHAP") and lime.startswith("LIME")
    # 48000^2 float64 is 18 GB: the process grew by less than 100 MB while refusing
    assert report["guard_kb"] < 100_000
    # grouped into 100 windows the same rows run; feature ablation over 16,000 columns builds
    # its coalitions per batch (an (R + 1, R) float32 matrix would be 1 GB)
    assert report["grouped"] == [2, 48_000] and report["ablation"] == [1, 16_000]
    assert report["runs_kb"] < 300_000


def test_memory_guard_error_is_a_memory_error_and_a_faithmap_error() -> None:
    assert issubclass(ResourceError, MemoryError) and issubclass(
        ResourceError, faithmap.FaithmapError
    )
    from faithmap.methods.coalitions import available_memory

    available = available_memory()
    assert available is None or available > 0


# --------------------------------------------------------------------- SLIC's region count
def noise(size: int) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_slic_on_noise_warns_with_the_counts_and_the_fix() -> None:
    # scikit-image's own compactness 10 merges noise into a few regions (faithmap's default 30)
    with pytest.warns(UserWarning, match=r"asked for 49 regions but obtained \d+") as caught:
        regions = slic(noise(64), 49, compactness=10.0)
    message = str(caught[0].message)
    assert "compactness" in message and "patches:K" in message
    assert int(regions.obtained.min()) < 49 / 2
    assert regions.obtained.shape == (2,) and int(regions.obtained.max()) <= regions.count


def test_slic_with_the_suggested_compactness_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regions = slic(noise(64), 49, compactness=30.0)
    assert int(regions.obtained.min()) >= 49 / 2


def test_default_slic_keeps_its_regions_on_noise() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        regions = make_regions("slic:25", noise(64))
    assert int(regions.obtained.min()) >= 25 / 2


def test_regions_report_the_count_obtained_per_image() -> None:
    labels = torch.tensor([[[0, 0], [1, 1]], [[0, 0], [0, 0]]])
    regions = Regions(labels, 2, "labels")
    assert regions.obtained.tolist() == [2, 1]


# ----------------------------------------------------- scikit-learn estimators' batch size
class SlowCalls:
    """An estimator whose every call costs 2 ms whatever its size: the per-call overhead
    (input validation, set-up) that makes chunks of 1024 rows slow for scikit-learn models."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        self.sizes.append(rows.shape[0])
        time.sleep(0.002)
        first = 1.0 / (1.0 + np.exp(-rows.sum(1)))
        return np.stack([1.0 - first, first], 1)


def test_an_estimator_is_called_with_a_measured_batch_size_above_1024() -> None:
    estimator = SlowCalls()
    wrapped = tabular_model(estimator)
    assert isinstance(wrapped, EstimatorModel)
    rows = torch.rand(1_000_000, 2, dtype=torch.float64)
    outputs = wrapped.outputs(rows)
    assert outputs.shape == (1_000_000, 2)
    ((key, (size, _)),) = wrapped.estimator_batch_sizes.items()
    assert key[0] == "predict_proba" and size > 1024
    whole, rest = divmod(1_000_000, size)
    job = [size] * whole + ([rest] if rest else [])
    assert estimator.sizes[-len(job) :] == job, estimator.sizes
    assert wrapped.ledger.calibration_seconds > 0
    # a second model of the same estimator reuses the measurement
    estimator.sizes.clear()
    tabular_model(estimator).outputs(rows[:200_000])
    assert max(estimator.sizes) == size


def test_a_given_batch_size_is_kept_for_an_estimator() -> None:
    estimator = SlowCalls()
    tabular_model(estimator, batch_size=3000).outputs(torch.rand(7000, 2, dtype=torch.float64))
    assert estimator.sizes == [3000, 3000, 1000]
