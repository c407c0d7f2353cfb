"""Train faithmap's built-in detector on synthetic scenes and save its weights.

Run as a script to (re)make the shipped weights::

    python -m faithmap.zoo.train_detector --out src/faithmap/zoo/weights/detector.safetensors

The detector (:class:`faithmap.zoo.detector.ShapesDetector`) learns CenterNet's targets: a
Gaussian peak per object on its class's heatmap at the grid cell of the box centre, trained with
the penalty-reduced focal loss, and the box's centre offset and log size at that cell, trained
with an L1 loss. Training is deterministic given the seed: the training set is
``make_shapes_scenes(n_train, seed=2 * seed)`` and the held-out set
``make_shapes_scenes(n_eval, seed=2 * seed + 1)``, so training data is never evaluated on.
Held-out quality is the mean average precision at IoU 0.5 (:func:`mean_average_precision`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from faithmap.core.validation import check_float, check_int
from faithmap.data import CLASS_NAMES, make_shapes_scenes
from faithmap.errors import InvalidParameterError, ShapeError
from faithmap.zoo.detector import STRIDE, ShapesDetector, box_iou

__all__ = ["DetectorTrainResult", "average_precision", "main", "mean_average_precision", "train"]

# Score threshold of the detections scored by mean_average_precision after training: low, so
# that the precision-recall curve is traced down to high recall.
EVAL_SCORE_THRESHOLD: Final = 0.05
# Focal-loss exponents of CenterNet: alpha on the prediction, beta on the Gaussian's distance.
_ALPHA: Final = 2
_BETA: Final = 4


@dataclass(frozen=True)
class DetectorTrainResult:
    """The outcome of :func:`train`.

    Attributes
    ----------
    model : ShapesDetector
        The trained detector, in eval mode, on the CPU.
    map50 : float
        Mean average precision at IoU 0.5 on the held-out scenes, in ``[0, 1]``.
    seed, n_train, epochs : int
        Seed, training scenes and epochs of the run.
    seconds : float
        Wall time of data generation, training and evaluation.
    """

    model: ShapesDetector
    map50: float
    seed: int
    n_train: int
    epochs: int
    seconds: float


def average_precision(scores: torch.Tensor, correct: torch.Tensor, n_truths: int) -> float:
    """Area under the precision-recall curve of ranked detections of one class.

    Precision is replaced by its running maximum from the right (the precision envelope) and
    integrated over recall at every detection (all-point interpolation, PASCAL VOC 2010 on).

    Parameters
    ----------
    scores : torch.Tensor
        ``(K,)`` detection scores.
    correct : torch.Tensor
        ``(K,)`` bool: whether each detection matched a ground-truth object.
    n_truths : int
        Number of ground-truth objects of the class; 0 gives 0.

    Returns
    -------
    float
        Average precision in ``[0, 1]``.
    """
    if n_truths == 0 or len(scores) == 0:
        return 0.0
    hits = correct[scores.argsort(descending=True, stable=True)].double()
    true_pos = hits.cumsum(0)
    precision = true_pos / torch.arange(1, len(hits) + 1, dtype=torch.float64)
    envelope = precision.flip(0).cummax(0).values.flip(0)
    # Recall grows by 1 / n_truths at each correct detection, and only there.
    return float((envelope * hits).sum() / n_truths)


def mean_average_precision(
    detections: Sequence[Mapping[str, torch.Tensor]],
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    *,
    iou_threshold: float = 0.5,
) -> float:
    """Mean over classes of the :func:`average_precision` of detections against ground truth.

    In each image, detections are visited by decreasing score; one is correct when its IoU with
    a ground-truth box of its class, not yet matched by a higher-scored detection, is at least
    `iou_threshold` (it takes the best such box). The mean runs over the classes that have
    ground-truth objects; detections of other classes count nowhere.

    Parameters
    ----------
    detections : sequence of mapping
        Per image, ``boxes`` ``(K, 4)`` ``x0, y0, x1, y1``, ``scores`` ``(K,)`` and ``labels``
        ``(K,)`` (the output of :meth:`ShapesDetector.detect`).
    boxes, labels : sequence of torch.Tensor
        Per image, the ground truth: ``(G, 4)`` boxes and ``(G,)`` labels.
    iou_threshold : float, default=0.5
        Least IoU of a correct detection, in ``(0, 1]``.

    Returns
    -------
    float
        Mean average precision in ``[0, 1]``.

    Raises
    ------
    ShapeError
        If the three sequences differ in length.

    References
    ----------
    Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
    """
    iou_threshold = check_float(
        iou_threshold, "iou_threshold", "mean_average_precision", low=0.0, high=1.0, low_open=True
    )
    if not len(detections) == len(boxes) == len(labels):
        raise ShapeError(
            "mean_average_precision takes one detection dict, one box tensor and one label "
            f"tensor per image. Got {len(detections)}, {len(boxes)} and {len(labels)} instead."
        )
    scores: list[torch.Tensor] = []
    classes: list[torch.Tensor] = []
    correct: list[torch.Tensor] = []
    for found, truth_boxes, truth_labels in zip(detections, boxes, labels, strict=True):
        order = found["scores"].argsort(descending=True, stable=True)
        pred_boxes, pred_labels = found["boxes"][order], found["labels"][order]
        iou = box_iou(pred_boxes.float(), truth_boxes.float())
        iou[pred_labels[:, None] != truth_labels[None, :]] = -1.0
        taken = torch.zeros(len(truth_labels), dtype=torch.bool)
        hit = torch.zeros(len(order), dtype=torch.bool)
        for k in range(len(order)):
            candidates = iou[k].masked_fill(taken, -1.0)
            if len(candidates) and candidates.max() >= iou_threshold:
                taken[candidates.argmax()] = True
                hit[k] = True
        scores.append(found["scores"][order])
        classes.append(pred_labels)
        correct.append(hit)
    all_scores, all_classes, all_correct = torch.cat(scores), torch.cat(classes), torch.cat(correct)
    truth = torch.cat(list(labels))
    precisions = [
        average_precision(
            all_scores[all_classes == c], all_correct[all_classes == c], int((truth == c).sum())
        )
        for c in torch.unique(truth).tolist()
    ]
    return sum(precisions) / len(precisions) if precisions else 0.0


def _targets(
    boxes: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_classes: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Heatmaps ``(B, C, g, g)``, box targets ``(B, 4, g, g)`` and positive cells ``(B, g, g)``."""
    n = len(boxes)
    counts = torch.tensor([len(b) for b in boxes])
    owner = torch.repeat_interleave(torch.arange(n), counts)
    flat, label = torch.cat(list(boxes)), torch.cat(list(labels))
    centre = (flat[:, :2] + flat[:, 2:]) / 2 / STRIDE  # in cells
    size = (flat[:, 2:] - flat[:, :2]) / STRIDE
    cell = centre.floor().long().clamp(0, grid - 1)  # (M, 2) column, row
    # One Gaussian per object on its class's heatmap, exactly 1 at its cell, sigma = side / 6.
    sigma = size.max(dim=1).values / 6
    steps = torch.arange(grid, dtype=torch.float32)
    dx = (steps[None, :] - cell[:, 0, None]) ** 2
    dy = (steps[None, :] - cell[:, 1, None]) ** 2
    gauss = torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * sigma[:, None, None] ** 2))
    heat = torch.zeros((n * num_classes, grid * grid))
    index = (owner * num_classes + label)[:, None].expand(-1, grid * grid)
    heat.scatter_reduce_(0, index, gauss.reshape(-1, grid * grid), "amax")
    box = torch.zeros((n, 4, grid, grid))
    positive = torch.zeros((n, grid, grid), dtype=torch.bool)
    values = torch.cat([centre - cell, size.log()], dim=1)
    box[owner, :, cell[:, 1], cell[:, 0]] = values
    positive[owner, cell[:, 1], cell[:, 0]] = True
    return heat.reshape(n, num_classes, grid, grid), box, positive


def _loss(
    raw: torch.Tensor, heat: torch.Tensor, box: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss plus the L1 loss of offsets and log sizes."""
    logits = raw[:, 4:]
    prob = logits.sigmoid()
    peak = heat == 1.0
    pos = ((1 - prob) ** _ALPHA * F.logsigmoid(logits))[peak].sum()
    neg = ((1 - heat) ** _BETA * prob**_ALPHA * F.logsigmoid(-logits))[~peak].sum()
    n_pos = max(1, int(positive.sum()))
    cells = positive[:, None].expand_as(box)
    predicted = torch.cat([raw[:, :2].sigmoid(), raw[:, 2:4]], dim=1)
    regression = F.l1_loss(predicted[cells], box[cells], reduction="sum")
    return -(pos + neg) / n_pos + regression / n_pos


def train(
    *,
    n_train: int = 2_000,
    epochs: int = 6,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 5e-3,
    weight_decay: float = 1e-4,
    size: int = ShapesDetector.input_size,
    n_eval: int = 500,
    num_threads: int | None = None,
) -> DetectorTrainResult:
    """Train a :class:`ShapesDetector` from scratch on :func:`make_shapes_scenes` data.

    Optimisation is AdamW with a one-cycle learning-rate schedule; each training image is
    flipped horizontally with probability 1/2 at every pass (the six shapes are symmetric under
    the flip). The global random state is used for initialisation, shuffling and flips under a
    fixed seed and restored on return.

    Parameters
    ----------
    n_train : int, default=2000
        Training scenes.
    epochs : int, default=6
        Passes over the training scenes.
    seed : int, default=0
        Seed of the data, the initialisation and the shuffling, >= 0.
    batch_size : int, default=32
        Scenes per optimisation step.
    lr : float, default=5e-3
        Peak learning rate of the one-cycle schedule.
    weight_decay : float, default=1e-4
        AdamW's weight decay, >= 0.
    size : int, default=96
        Height and width of the scenes; a multiple of 8, >= 48.
    n_eval : int, default=500
        Held-out scenes on which the mean average precision is measured.
    num_threads : int or None, default=None
        If given, torch's intra-op thread count during training (restored afterwards).

    Returns
    -------
    DetectorTrainResult
        The trained detector in eval mode and its held-out mAP at IoU 0.5.

    References
    ----------
    Zhou, Wang and Krähenbühl, "Objects as Points", arXiv:1904.07850, 2019; Lin et al.,
    "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    for name, value in [
        ("n_train", n_train),
        ("epochs", epochs),
        ("batch_size", batch_size),
        ("n_eval", n_eval),
    ]:
        check_int(value, name, "train", low=1)
    check_int(seed, "seed", "train", low=0)
    check_int(size, "size", "train", low=48)
    if size % STRIDE:
        raise InvalidParameterError(
            f"The 'size' parameter of train must be a multiple of {STRIDE}. Got {size} instead."
        )
    lr = check_float(lr, "lr", "train", low=0.0, low_open=True)
    weight_decay = check_float(weight_decay, "weight_decay", "train", low=0.0)
    if num_threads is not None:
        check_int(num_threads, "num_threads", "train", low=1)

    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ShapesDetector(num_classes=len(CLASS_NAMES))  # initialised under the seed
            data = make_shapes_scenes(n_train, seed=2 * seed, size=size)
            _fit(model, data.images, data.boxes, data.labels, epochs, batch_size, lr, weight_decay)
        model.eval()
        held_out = make_shapes_scenes(n_eval, seed=2 * seed + 1, size=size)
        found = [
            d
            for x in torch.split(held_out.images, 256)
            for d in model.detect(x, score_threshold=EVAL_SCORE_THRESHOLD)
        ]
        map50 = mean_average_precision(found, held_out.boxes, held_out.labels)
    finally:
        torch.set_num_threads(threads_before)
    return DetectorTrainResult(
        model=model,
        map50=map50,
        seed=seed,
        n_train=n_train,
        epochs=epochs,
        seconds=time.perf_counter() - start,
    )


def _fit(
    model: ShapesDetector,
    images: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
) -> None:
    size = images.shape[-1]
    grid = size // STRIDE
    mirrored = [torch.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], 1) for b in boxes]
    targets = _targets(boxes, labels, model.num_classes, grid)
    flipped = _targets(mirrored, labels, model.num_classes, grid)
    steps_per_epoch = -(-len(images) // batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(images)), batch_size):
            flip = torch.rand(len(idx)) < 0.5
            batch = torch.where(flip[:, None, None, None], images[idx].flip(-1), images[idx])
            heat, box, positive = (
                torch.where(flip.view(-1, *[1] * (a.ndim - 1)), b[idx], a[idx])
                for a, b in zip(targets, flipped, strict=True)
            )
            loss = _loss(model.raw(batch), heat, box, positive)
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimiser.step()
            schedule.step()


def main(argv: Sequence[str] | None = None) -> None:
    """Train the built-in detector and save its weights with metadata as safetensors.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(
        prog="python -m faithmap.zoo.train_detector", description=__doc__
    )
    parser.add_argument("--out", type=Path, required=True, help="path of the .safetensors file")
    # Options left out fall back to the defaults of train().
    for flag, kind in [
        ("--n-train", int),
        ("--epochs", int),
        ("--seed", int),
        ("--batch-size", int),
        ("--lr", float),
        ("--weight-decay", float),
        ("--size", int),
        ("--n-eval", int),
        ("--threads", int),
    ]:
        dest = "num_threads" if flag == "--threads" else flag[2:].replace("-", "_")
        parser.add_argument(flag, type=kind, dest=dest, default=argparse.SUPPRESS)
    options = vars(parser.parse_args(argv))
    out: Path = options.pop("out")

    result = train(**options)
    metadata = {
        "arch": "detector",
        "map50": f"{result.map50:.4f}",
        "seed": str(result.seed),
        "n_train": str(result.n_train),
        "epochs": str(result.epochs),
    }
    state = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=metadata)
    print(
        f"detector: held-out mAP@0.5 {result.map50:.4f} after {result.epochs} epochs in "
        f"{result.seconds:.1f} s; saved to {out}"
    )


if __name__ == "__main__":
    main()
