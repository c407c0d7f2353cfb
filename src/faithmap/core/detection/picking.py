"""Choosing the object to explain on an image: a given box, or the model's I-th detection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from torch import Tensor

from faithmap.core.detection.adapters import TorchvisionAdapter, infer_adapter
from faithmap.core.detection.targets import BoxTarget, check_box
from faithmap.errors import InvalidParameterError

if TYPE_CHECKING:
    from faithmap.core.model import Model, ModelLike


class PickedBox(NamedTuple):
    """A box target chosen on one image and its score there."""

    target: BoxTarget
    score: float


def pick_boxes(
    model: ModelLike,
    images: Tensor,
    *,
    box: Sequence[float] | None = None,
    label: int | None = None,
    detection: int | None = None,
    objectness: bool = False,
) -> list[PickedBox]:
    """One box target per image: the given ``box`` and ``label``, or the ``detection``-th
    prediction of the model on the image (0: the highest-scoring, see
    :meth:`Detections.ranked`).

    One forward pass per image; the adapter is inferred from the outputs
    (:func:`infer_adapter`). Raises if the box leaves the image, the label is not a class of
    the detector, the image has fewer detections, or the outputs are not a detector's.
    """
    from faithmap.core.model import Model as Wrapper

    wrapped = Wrapper.wrap(model)
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if (box is None) == (detection is None) or (box is None) != (label is None):
        raise InvalidParameterError(
            "Choose the object to explain either by a box and a label, or by the index of a "
            "detection (0: the model's highest-scoring prediction). Got box="
            f"{None if box is None else tuple(box)}, label={label}, detection={detection}."
        )
    reference = None if box is None else check_box(box, "pick_boxes")
    if reference is not None and (
        min(reference[:2]) < 0 or reference[2] > width or reference[3] > height
    ):
        raise InvalidParameterError(
            f"The box {reference} leaves the image of {width}x{height} pixels: give "
            f"0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}."
        )
    if detection is not None and (not isinstance(detection, int) or detection < 0):
        raise InvalidParameterError(
            f"The 'detection' index must be an int >= 0. Got {detection!r} instead."
        )
    picked = []
    for i in range(images.shape[0]):
        raw = _raw_output(wrapped, images[i : i + 1])
        adapter = infer_adapter(raw, image_size=(height, width), objectness=objectness)
        if isinstance(adapter, TorchvisionAdapter) and label is not None:
            adapter = TorchvisionAdapter(max(adapter.num_classes, label + 1))
        if reference is not None and label is not None:
            target = BoxTarget(box=reference, label=label, adapter=adapter)
        else:
            ranked = adapter(raw).ranked(0)
            if detection is None or detection >= len(ranked):
                which = f"an index in [0, {len(ranked) - 1}]" if ranked else "a box and a label"
                raise InvalidParameterError(
                    f"Image {i} has {len(ranked)} detections (boxes with an area and a score "
                    f"above 0), so there is no detection {detection}: give {which}."
                )
            chosen = ranked[detection]
            target = BoxTarget(box=chosen.box, label=chosen.label, adapter=adapter)
        picked.append(PickedBox(target, float(target(raw)[0])))
    return picked


def _raw_output(model: Model, image: Tensor) -> object:
    """The model's raw output for one image ``(1, C, H, W)``: one forward pass."""
    found: list[object] = []
    model.output_rows(
        1,
        1,
        lambda _, __: image,
        lambda _, __, output: found.append(output),
        device=image.device,
    )
    return found[0]
