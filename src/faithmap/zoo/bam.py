"""The two BAM models: one trained on the object's class, one on the scene's, same pixels.

Both are :class:`~faithmap.zoo.SmallCNN` trained by :mod:`faithmap.zoo.train`'s optimiser on
:func:`faithmap.data.make_bam` images; only the label differs. Because objects and scenes are
drawn independently, the object model gains nothing from the scene and the scene model nothing
from the object (a common feature of every scene class): on the object's pixels the object model
should rely on them more than the scene model does. Run as a script to (re)make the shipped
weights::

    python -m faithmap.zoo.bam --out-dir src/faithmap/zoo/weights

which trains both (about two minutes on two cores) and writes ``bam_object.safetensors`` and
``bam_scene.safetensors``.

References
----------
Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Final

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file
from torch import nn

from faithmap.core.validation import check_choice, check_int
from faithmap.data.bam import BamBatch, make_bam
from faithmap.errors import FileProblemError, ShapeError
from faithmap.zoo import architecture
from faithmap.zoo.train import accuracy, fit

__all__ = [
    "BAM_TASKS",
    "BamTrainResult",
    "insignificant_patch",
    "labels_of",
    "load_bam",
    "main",
    "train_bam",
]

BAM_TASKS: Final[tuple[str, ...]] = ("object", "scene")
"""What each BAM model predicts: the pasted object's class or the scene's class."""


@dataclass(frozen=True)
class BamTrainResult:
    """The outcome of :func:`train_bam`.

    Attributes
    ----------
    task : str
        ``"object"`` or ``"scene"``.
    model : nn.Module
        The trained model, in eval mode, on the CPU.
    accuracy : float
        Held-out accuracy on its own label.
    seed, n_train, epochs : int
        The run's settings.
    seconds : float
        Wall time of data generation, training and evaluation.
    """

    task: str
    model: nn.Module
    accuracy: float
    seed: int
    n_train: int
    epochs: int
    seconds: float


def labels_of(batch: BamBatch, task: str) -> torch.Tensor:
    """The labels a `task` model predicts: ``batch.object_labels`` or ``batch.scene_labels``."""
    task = check_choice(task, "task", "labels_of", BAM_TASKS)
    return batch.object_labels if task == "object" else batch.scene_labels


def train_bam(
    task: str,
    *,
    n_train: int = 4_000,
    epochs: int = 3,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 1e-2,
    n_eval: int = 1_000,
) -> BamTrainResult:
    """Train a :class:`~faithmap.zoo.SmallCNN` on :func:`~faithmap.data.make_bam` for `task`.

    AdamW (weight decay 1e-4) with a one-cycle schedule, as :func:`faithmap.zoo.train.train`.
    The training set is ``make_bam(n_train, seed=2 * seed)``, the held-out set
    ``make_bam(n_eval, seed=2 * seed + 1)``; the global random state is restored on return.

    Parameters
    ----------
    task : {"object", "scene"}
        The label to learn.
    n_train, epochs, seed, batch_size : int
        Training images, passes over them, seed (>= 0) and images per step.
    lr : float, default=0.01
        Peak learning rate.
    n_eval : int, default=1000
        Held-out images.

    Returns
    -------
    BamTrainResult
        The model in eval mode and its held-out accuracy.

    Raises
    ------
    InvalidParameterError
        If `task` is unknown or a count is out of range.
    """
    task = check_choice(task, "task", "train_bam", BAM_TASKS)
    for name, value in [
        ("n_train", n_train),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("n_eval", n_eval),
    ]:
        check_int(value, name, "train_bam", low=1)
    check_int(seed, "seed", "train_bam", low=0)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = architecture("cnn")
        data = make_bam(n_train, seed=2 * seed)
        fit(model, data.images, labels_of(data, task), epochs, batch_size, lr, 1e-4, False)
    model.eval()
    held_out = make_bam(n_eval, seed=2 * seed + 1)
    acc = accuracy(model, held_out.images, labels_of(held_out, task))
    return BamTrainResult(
        task=task,
        model=model,
        accuracy=acc,
        seed=seed,
        n_train=n_train,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


def load_bam(task: str) -> nn.Module:
    """The shipped BAM model for `task` (``"object"`` or ``"scene"``), in eval mode.

    Raises
    ------
    InvalidParameterError
        If `task` is unknown.
    FileProblemError
        If the weights file is missing from the installation.

    Examples
    --------
    >>> model = load_bam("scene")
    >>> model(make_bam(2).images).shape
    torch.Size([2, 6])
    """
    task = check_choice(task, "task", "load_bam", BAM_TASKS)
    weights = files("faithmap.zoo").joinpath("weights", f"bam_{task}.safetensors")
    if not weights.is_file():
        raise FileProblemError(
            f"The weights of the BAM {task} model are missing ({weights}). Make them with "
            "`python -m faithmap.zoo.bam --out-dir src/faithmap/zoo/weights`."
        )
    model = architecture("cnn")
    model.load_state_dict(load_safetensors(weights.read_bytes()))
    return model.eval()


def insignificant_patch(
    model: nn.Module,
    scenes: torch.Tensor,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    steps: int = 100,
    lr: float = 0.02,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch `scenes` on `masks` so that the input changes but `model`'s output does not.

    The patch starts as the pasted object (``images`` on the mask) and its pixels, and only
    those, are optimised with Adam to bring the logits back to those of the unpatched scene
    (squared error), kept in ``[0, 1]``: BAM's *functionally insignificant* patch, the input of
    the input independence rate. The model's parameters are not changed.

    Parameters
    ----------
    model : nn.Module
        A classifier in eval mode (BAM: the scene model).
    scenes : torch.Tensor
        ``(N, 3, H, W)`` images without the patch (``make_bam(...).scene_only``).
    images : torch.Tensor
        ``(N, 3, H, W)``: the patch's starting pixels on the mask (``make_bam(...).images``).
    masks : torch.Tensor
        ``(N, 1, H, W)`` bool patch regions.
    steps : int, default=100
        Adam steps.
    lr : float, default=0.02
        Adam's step size, in pixel units.

    Returns
    -------
    patched : torch.Tensor
        ``(N, 3, H, W)``: `scenes` outside the mask, the optimised patch inside.
    change : torch.Tensor
        ``(N,)`` relative change of the logits, ``||f(patched) - f(scenes)|| / ||f(scenes)||``.

    References
    ----------
    Yang and Kim, "Benchmarking Attribution Methods with Relative Feature Importance", 2019
    (``scripts/construct_delta_patch.py``).
    """
    check_int(steps, "steps", "insignificant_patch", low=1)
    if scenes.shape != images.shape or masks.shape != (scenes.shape[0], 1, *scenes.shape[2:]):
        raise ShapeError(
            "insignificant_patch needs scenes and images of one shape (N, 3, H, W) and masks "
            f"(N, 1, H, W). Got {tuple(scenes.shape)}, {tuple(images.shape)} and "
            f"{tuple(masks.shape)}."
        )
    with torch.no_grad():
        reference = model(scenes)
    patch = images.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([patch], lr=lr)
    for _ in range(steps):
        logits = model(torch.where(masks, patch, scenes))
        loss = (logits - reference).square().sum()
        (gradient,) = torch.autograd.grad(loss, patch)
        patch.grad = gradient
        optimiser.step()
        with torch.no_grad():
            patch.clamp_(0.0, 1.0)
    with torch.no_grad():
        patched = torch.where(masks, patch, scenes)
        change = (model(patched) - reference).norm(dim=1) / reference.norm(dim=1)
    return patched.detach(), change


def main(argv: Sequence[str] | None = None) -> None:
    """Train both BAM models and save them as ``bam_<task>.safetensors`` in ``--out-dir``."""
    parser = argparse.ArgumentParser(prog="python -m faithmap.zoo.bam", description=__doc__)
    parser.add_argument("--out-dir", type=Path, required=True, dest="out_dir")
    parser.add_argument("--n-train", type=int, dest="n_train", default=4_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    for task in BAM_TASKS:
        result = train_bam(task, n_train=options.n_train, epochs=options.epochs, seed=options.seed)
        metadata = {
            "task": task,
            "accuracy": f"{result.accuracy:.4f}",
            "seed": str(result.seed),
            "n_train": str(result.n_train),
            "epochs": str(result.epochs),
        }
        state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
        out = options.out_dir / f"bam_{task}.safetensors"
        save_file(state, str(out), metadata=metadata)
        print(
            f"bam {task}: held-out accuracy {result.accuracy:.4f} after {result.epochs} epochs "
            f"in {result.seconds:.1f} s; saved to {out}"
        )


if __name__ == "__main__":
    main()
