"""Train faithmap's built-in models on the synthetic shapes and save their weights.

Run as a script to (re)make the shipped weights::

    python -m faithmap.zoo.train --arch cnn --out src/faithmap/zoo/weights/cnn.safetensors
    python -m faithmap.zoo.train --arch resnet --out src/faithmap/zoo/weights/resnet.safetensors
    python -m faithmap.zoo.train --arch vit --out src/faithmap/zoo/weights/vit.safetensors

Each architecture has its own default :class:`Recipe` (:data:`RECIPES`): the convolutional
networks learn fast at a high learning rate; the vision transformer, which lacks their built-in
locality, needs a lower rate, stronger weight decay and horizontal flips.

Training is deterministic given the seed: the training set is ``make_shapes(n_train,
seed=2 * seed)`` and the held-out set ``make_shapes(n_eval, seed=2 * seed + 1)``, so no two
seeds share data and training data is never evaluated on.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from faithmap.core.validation import check_choice, check_float, check_int
from faithmap.data import make_shapes
from faithmap.errors import InvalidParameterError
from faithmap.zoo import BUILTIN_MODELS, architecture

__all__ = ["RECIPES", "Recipe", "TrainResult", "accuracy", "fit", "main", "train"]


@dataclass(frozen=True)
class Recipe:
    """Default training settings of one built-in architecture.

    Attributes
    ----------
    n_train : int
        Training images.
    epochs : int
        Passes over the training images.
    lr : float
        Peak learning rate of the one-cycle schedule.
    weight_decay : float
        AdamW's decoupled weight decay.
    flip : bool
        Flip each training image horizontally with probability 1/2 at every pass.
    """

    n_train: int
    epochs: int
    lr: float
    weight_decay: float
    flip: bool


RECIPES: Final[dict[str, Recipe]] = {
    "cnn": Recipe(n_train=8_000, epochs=6, lr=1e-2, weight_decay=1e-4, flip=False),
    "resnet": Recipe(n_train=8_000, epochs=6, lr=1e-2, weight_decay=1e-4, flip=False),
    "vit": Recipe(n_train=8_000, epochs=10, lr=3e-3, weight_decay=0.05, flip=True),
}
"""The default :class:`Recipe` of each name in :data:`faithmap.zoo.BUILTIN_MODELS`."""


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes
    ----------
    arch : str
        Name of the architecture in :data:`faithmap.zoo.BUILTIN_MODELS`.
    model : nn.Module
        The trained model, in eval mode, on the CPU.
    accuracy : float
        Accuracy on the held-out set, in ``[0, 1]``.
    seed : int
        Seed of the run.
    n_train : int
        Training images.
    epochs : int
        Epochs run.
    seconds : float
        Wall time of data generation, training and evaluation.
    """

    arch: str
    model: nn.Module
    accuracy: float
    seed: int
    n_train: int
    epochs: int
    seconds: float


@torch.inference_mode()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of `images` whose arg-max logit under `model` equals `labels`.

    Parameters
    ----------
    model : nn.Module
        A classifier, used as it is (put it in eval mode first).
    images : torch.Tensor
        ``(N, 3, H, W)`` images in ``[0, 1]``.
    labels : torch.Tensor
        ``(N,)`` integer labels.

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.
    """
    correct = 0
    for x, y in zip(torch.split(images, 256), torch.split(labels, 256), strict=True):
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / len(labels)


def train(
    arch: str,
    *,
    n_train: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    lr: float | None = None,
    weight_decay: float | None = None,
    flip: bool | None = None,
    n_eval: int = 2_000,
    num_threads: int | None = None,
) -> TrainResult:
    """Train one of the built-in architectures from scratch on :func:`make_shapes` data.

    Optimisation is AdamW with a one-cycle learning-rate schedule and cross-entropy loss;
    settings left as None come from the architecture's :class:`Recipe` in :data:`RECIPES`.
    The global random state is used for initialisation, shuffling and flips under a fixed seed
    and restored on return.

    Parameters
    ----------
    arch : str
        A name in :data:`faithmap.zoo.BUILTIN_MODELS`.
    n_train : int or None, default=None
        Training images.
    epochs : int or None, default=None
        Passes over the training images.
    seed : int, default=0
        Seed of the data, the initialisation and the shuffling, >= 0.
    batch_size : int, default=64
        Images per optimisation step.
    lr : float or None, default=None
        Peak learning rate of the one-cycle schedule.
    weight_decay : float or None, default=None
        AdamW's weight decay, >= 0.
    flip : bool or None, default=None
        Whether to flip training images horizontally at random.
    n_eval : int, default=2000
        Held-out images on which the accuracy is measured.
    num_threads : int or None, default=None
        If given, torch's intra-op thread count during training (restored afterwards);
        otherwise it is left as it is.

    Returns
    -------
    TrainResult
        The trained model in eval mode and its held-out accuracy.

    Raises
    ------
    InvalidParameterError
        If `arch` is unknown or a numeric parameter is out of range.

    References
    ----------
    Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019; Smith and
    Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large Learning
    Rates", 2019.
    """
    recipe = RECIPES[check_choice(arch, "arch", "train", BUILTIN_MODELS)]
    n_train = recipe.n_train if n_train is None else n_train
    epochs = recipe.epochs if epochs is None else epochs
    lr = recipe.lr if lr is None else lr
    weight_decay = recipe.weight_decay if weight_decay is None else weight_decay
    flip = recipe.flip if flip is None else flip
    for name, value in [
        ("n_train", n_train),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("n_eval", n_eval),
    ]:
        check_int(value, name, "train", low=1)
    check_int(seed, "seed", "train", low=0)
    lr = check_float(lr, "lr", "train", low=0.0, low_open=True)
    weight_decay = check_float(weight_decay, "weight_decay", "train", low=0.0)
    if not isinstance(flip, bool):
        raise InvalidParameterError(
            f"The 'flip' parameter of train must be a bool or None. Got {flip!r} instead."
        )
    if num_threads is not None:
        check_int(num_threads, "num_threads", "train", low=1)

    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = architecture(arch)  # initialised under the seed
            data = make_shapes(n_train, seed=2 * seed)
            fit(model, data.images, data.labels, epochs, batch_size, lr, weight_decay, flip)
        model.eval()
        held_out = make_shapes(n_eval, seed=2 * seed + 1)
        acc = accuracy(model, held_out.images, held_out.labels)
    finally:
        torch.set_num_threads(threads_before)
    return TrainResult(
        arch=arch,
        model=model,
        accuracy=acc,
        seed=seed,
        n_train=n_train,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    flip: bool,
) -> None:
    """Train ``model`` in place on ``images`` and ``labels``: :func:`train`'s optimisation.

    AdamW, a one-cycle schedule peaking at ``lr``, cross-entropy, shuffled batches drawn from
    torch's global random state (seed it first); leaves the model in training mode. Also
    used by ROAR (:mod:`faithmap.bench.roar`) to retrain on modified images.
    """
    steps_per_epoch = -(-len(labels) // batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(labels)), batch_size):
            batch = images[idx]
            if flip:
                flipped = torch.rand(len(idx)) < 0.5
                batch = torch.where(flipped[:, None, None, None], batch.flip(-1), batch)
            loss = F.cross_entropy(model(batch), labels[idx])
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimiser.step()
            schedule.step()


def main(argv: Sequence[str] | None = None) -> None:
    """Train a built-in model and save its weights with metadata as safetensors.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(prog="python -m faithmap.zoo.train", description=__doc__)
    parser.add_argument("--arch", choices=BUILTIN_MODELS, required=True)
    parser.add_argument("--out", type=Path, required=True, help="path of the .safetensors file")
    # Options left out fall back to the defaults of train() and the architecture's recipe.
    parser.add_argument("--n-train", type=int, dest="n_train", default=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, dest="batch_size", default=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, default=argparse.SUPPRESS)
    parser.add_argument(
        "--weight-decay", type=float, dest="weight_decay", default=argparse.SUPPRESS
    )
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
    parser.add_argument("--n-eval", type=int, dest="n_eval", default=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        dest="num_threads",
        default=argparse.SUPPRESS,
        help="torch intra-op threads while training (default: leave as is)",
    )
    options = vars(parser.parse_args(argv))
    out: Path = options.pop("out")

    result = train(**options)
    metadata = {
        "arch": result.arch,
        "accuracy": f"{result.accuracy:.4f}",
        "seed": str(result.seed),
        "n_train": str(result.n_train),
        "epochs": str(result.epochs),
    }
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=metadata)
    print(
        f"{result.arch}: held-out accuracy {result.accuracy:.4f} after {result.epochs} epochs "
        f"in {result.seconds:.1f} s; saved to {out}"
    )


if __name__ == "__main__":
    main()
