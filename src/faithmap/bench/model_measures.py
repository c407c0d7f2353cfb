"""The models measured beside the robustness suite's explanations (Nourelahi et al. 2022): each
model's confidence on the explained images, and its accuracy on fresh images, clean and under
two distribution shifts (Gaussian noise and a box blur)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithmap.core.model import Model
from faithmap.data import make_shapes
from faithmap.zoo import load_builtin

if TYPE_CHECKING:
    from faithmap.bench.suites import Suite


def _corrupted(images: Tensor, seed: int) -> list[Tensor]:
    """Two shifted copies of ``images``: Gaussian noise (sigma 0.1) and a 5 x 5 box blur."""
    gen = torch.Generator(device=images.device).manual_seed(seed)
    noise = torch.randn(images.shape, generator=gen, device=images.device, dtype=images.dtype)
    blurred = F.avg_pool2d(images, 5, stride=1, padding=2, count_include_pad=False)
    return [(images + 0.1 * noise).clamp(0.0, 1.0), blurred]


def _accuracy(model: Model, images: Tensor, labels: Tensor) -> float:
    return float((model.predict(images) == labels).double().mean())


def measure_models(
    suite: Suite, n_samples: int, *, load: Callable[[str], nn.Module] = load_builtin
) -> tuple[Any, Any]:
    """Each model's confidence on the explained images, and its accuracy, clean and shifted.

    Returns
    -------
    confidences : pandas.DataFrame
        ``model, sample, confidence, predicted`` on the suite's first ``n_samples`` images.
    accuracies : pandas.DataFrame
        Indexed by model: ``accuracy`` on :attr:`Suite.n_accuracy` fresh images,
        ``ood_accuracy`` on their corrupted copies (mean over noise and blur), ``confidence``.
    """
    import pandas

    data = make_shapes(n_samples, seed=suite.data_seed, size=suite.image_size)
    fresh = make_shapes(suite.n_accuracy, seed=suite.accuracy_seed, size=suite.image_size)
    shifted = _corrupted(fresh.images, suite.accuracy_seed)
    confidence_rows, accuracy_rows = [], []
    for name in suite.models:
        model = Model(load(name), batch_size=suite.batch_size)
        confidence, predicted = model.outputs(data.images, activation="softmax").max(dim=1)
        confidence_rows += [
            {"model": name, "sample": i, "confidence": float(c), "predicted": int(p)}
            for i, (c, p) in enumerate(zip(confidence, predicted, strict=True))
        ]
        accuracy_rows.append(
            {
                "model": name,
                "accuracy": _accuracy(model, fresh.images, fresh.labels),
                "ood_accuracy": sum(_accuracy(model, x, fresh.labels) for x in shifted)
                / len(shifted),
                "confidence": float(confidence.mean()),
            }
        )
    return pandas.DataFrame(confidence_rows), pandas.DataFrame(accuracy_rows).set_index("model")
