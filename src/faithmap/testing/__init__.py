"""Contract batteries for methods and metrics: what every registered entry must keep.

scikit-learn's ``check_estimator`` / ``parametrize_with_checks`` idea for faithmap. Each battery
runs a list of named checks on a tiny model and data it makes itself (a seeded CNN with batch
norm and dropout, or a tiny vision transformer for methods that read attention; five random
3x16x16 images, box masks; a small MLP on eight-column rows for tabular metrics), so a new
method or metric is checked by one call::

    from faithmap.testing import check_method, check_metric

    check_method("occlusion", {"window": 4, "stride": 4})
    check_metric("insertion", {"steps": 4})

A failing check raises :class:`AssertionError` whose message names the entry and the check. For
pytest, :func:`method_checks` and :func:`metric_checks` yield each check as ``(name, callable)``
so that a test can be parametrised per check::

    CHECKS = list(method_checks("occlusion", {"window": 4, "stride": 4}))

    @pytest.mark.parametrize("check", [c for _, c in CHECKS], ids=[n for n, _ in CHECKS])
    def test_occlusion(check):
        check()

``params`` are the entry's own parameters (cheap settings such as few steps); the batteries add
or override only what a check is about (``seed``, or one invalid value at a time).
:func:`check_registered_methods` checks that every concrete :class:`~faithmap.core.method.Method`
subclass defined in faithmap is registered.
"""

from __future__ import annotations

from faithmap.testing.data import (
    CLASSES,
    ConstantNet,
    FailsAfter,
    TinyCNN,
    TinyMLP,
    TinyViT,
    batched,
    model_for,
    tiny_images,
    tiny_masks,
    tiny_mlp,
    tiny_model,
    tiny_row_masks,
    tiny_rows,
    tiny_vit,
)
from faithmap.testing.methods import check_method, method_checks
from faithmap.testing.metrics import check_metric, metric_checks
from faithmap.testing.registration import check_registered_methods, faithmap_method_classes
from faithmap.testing.running import assert_same_state, module_state

__all__ = [
    "CLASSES",
    "ConstantNet",
    "FailsAfter",
    "TinyCNN",
    "TinyMLP",
    "TinyViT",
    "assert_same_state",
    "batched",
    "check_method",
    "check_metric",
    "check_registered_methods",
    "faithmap_method_classes",
    "method_checks",
    "metric_checks",
    "model_for",
    "module_state",
    "tiny_images",
    "tiny_masks",
    "tiny_mlp",
    "tiny_model",
    "tiny_row_masks",
    "tiny_rows",
    "tiny_vit",
]
