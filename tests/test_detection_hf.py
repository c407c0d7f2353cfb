"""Hugging Face detectors: the adapter's reading of DETR/YOLOS (softmax, "no object" last) and
OWL-ViT/Grounding DINO (sigmoid, phrases) outputs, and tiny randomly initialised DETR, YOLOS and
OWL-ViT models saved with ``save_pretrained``, loaded through ``hf:`` and explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from torch import Tensor

import faithmap
from faithmap.core.detection import BoxTarget, HuggingFaceAdapter, infer_adapter, pick_boxes
from faithmap.data import make_shapes
from faithmap.errors import InvalidParameterError, ModelError, TargetError
from faithmap.zoo.libraries import HuggingFaceDetector, load_hugging_face
from faithmap.zoo.loaders import load_model

SIZE = 64


def detr_output(logits: Tensor, pred_boxes: Tensor) -> Any:
    return transformers.models.detr.modeling_detr.DetrObjectDetectionOutput(
        logits=logits, pred_boxes=pred_boxes
    )


def test_softmax_reading_drops_no_object_and_picks_the_matching_query() -> None:
    """Image 20 x 40 (H x W). Query 0 sits on the reference box but is mostly "no object";
    query 1 scores higher elsewhere; query 2 matches the box with class 0 at 0.5: it wins."""
    probabilities = torch.tensor([[[0.2, 0.1, 0.7], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]])
    centres = torch.tensor([[[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0], [0.25, 0.5, 0.5, 1.0]]])
    output = detr_output(probabilities.log(), centres)
    adapter = infer_adapter(output, image_size=(20, 40))
    assert adapter == HuggingFaceAdapter((20, 40), "softmax")
    detections = adapter(output)
    expected_boxes = torch.tensor([[[0.0, 0, 20, 20], [20, 0, 40, 20], [0, 0, 20, 20]]])
    torch.testing.assert_close(detections.boxes, expected_boxes)
    torch.testing.assert_close(detections.scores, probabilities[..., :2])
    score = BoxTarget(box=(0, 0, 20, 20), label=0, adapter=adapter)(output)
    torch.testing.assert_close(score, torch.tensor([0.5]))
    # half the reference (0, 0, 10, 20) overlaps queries 0 and 2 by IoU 1/2
    half = BoxTarget(box=(0, 0, 10, 20), label=1, adapter=adapter)(output)
    torch.testing.assert_close(half, torch.tensor([0.2]))


def test_sigmoid_reading_scores_a_phrase_by_its_best_token() -> None:
    grounding = transformers.models.grounding_dino.modeling_grounding_dino
    logits = torch.tensor([[[0.0, 2.0, -1.0], [1.0, -3.0, 3.0]]])
    output = grounding.GroundingDinoObjectDetectionOutput(
        logits=logits, pred_boxes=torch.tensor([[[0.5, 0.5, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]]])
    )
    assert infer_adapter(output, image_size=(10, 10)) == HuggingFaceAdapter((10, 10), "sigmoid")
    phrases = HuggingFaceAdapter((10, 10), "sigmoid", token_groups=((0, 1), (2,)))
    detections = phrases(output)
    expected = torch.sigmoid(torch.tensor([[[2.0, -1.0], [1.0, 3.0]]]))
    torch.testing.assert_close(detections.scores, expected)
    whole = BoxTarget(box=(0, 0, 10, 10), label=1, adapter=phrases)(output)
    # query 0 covers the image (IoU 1) with sigmoid(-1); query 1 the middle (IoU 1/4), sigmoid(3)
    expected_score = max(float(torch.sigmoid(torch.tensor(-1.0))), 0.25 * float(expected[0, 1, 1]))
    assert float(whole[0]) == pytest.approx(expected_score)
    with pytest.raises(TargetError, match="beyond the detector's 3 text positions"):
        HuggingFaceAdapter((10, 10), "sigmoid", token_groups=((5,),))(output)


def test_hugging_face_adapter_errors() -> None:
    with pytest.raises(InvalidParameterError, match="'image_size'"):
        HuggingFaceAdapter((0, 10))
    with pytest.raises(InvalidParameterError, match="'activation'"):
        HuggingFaceAdapter((10, 10), "relu")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="at least one token"):
        HuggingFaceAdapter((10, 10), "sigmoid", token_groups=((),))
    with pytest.raises(TargetError, match="'logits' \\(B, Q, K\\) and 'pred_boxes'"):
        HuggingFaceAdapter((10, 10))({"logits": torch.zeros(1, 3, 2)})
    unknown = {"logits": torch.zeros(1, 2, 2), "pred_boxes": torch.zeros(1, 2, 4)}
    with pytest.raises(TargetError, match=r"cannot read as detections.*HuggingFaceAdapter"):
        infer_adapter(unknown, image_size=(10, 10))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny DETR, YOLOS and OWL-ViT with random weights, saved where ``hf:`` finds them."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf-detectors")
    # PretrainedConfig keywords (num_labels, out_features) are not in the typed signatures
    backbone: dict[str, Any] = {
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "out_features": ["stage2"],
    }
    detr: dict[str, Any] = {
        "use_timm_backbone": False,
        "backbone_config": transformers.ResNetConfig(**backbone),
        "use_pretrained_backbone": False,
        "d_model": 16,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_ffn_dim": 16,
        "decoder_ffn_dim": 16,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "num_queries": 5,
        "num_labels": 3,
    }
    layers = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1}
    yolos: dict[str, Any] = {
        **layers,
        "num_attention_heads": 2,
        "image_size": [SIZE, SIZE],
        "patch_size": 16,
        "num_detection_tokens": 5,
        "num_labels": 3,
    }
    text = {"vocab_size": 100, "max_position_embeddings": 8, "bos_token_id": 1, "eos_token_id": 2}
    owl = transformers.OwlViTConfig(
        text_config={**layers, **text, "num_attention_heads": 2, "pad_token_id": 0},
        vision_config={**layers, "num_attention_heads": 2, "image_size": SIZE, "patch_size": 16},
        projection_dim=16,
    )
    models = {
        "detr": transformers.DetrForObjectDetection(transformers.DetrConfig(**detr)),
        "yolos": transformers.YolosForObjectDetection(transformers.YolosConfig(**yolos)),
        "owlvit": transformers.OwlViTForObjectDetection(owl),
    }
    box_head = models["owlvit"].get_submodule("box_head.dense2")  # boxes: the prior boxes
    assert isinstance(box_head, torch.nn.Linear)
    torch.nn.init.zeros_(box_head.weight)
    torch.nn.init.zeros_(box_head.bias)
    for name, model in models.items():
        model.save_pretrained(root / name)
    return {name: root / name for name in models}


def images() -> Tensor:
    return make_shapes(2, seed=0).images  # 64 x 64


def pixel_iou(centre: Tensor, box: tuple[float, ...]) -> float:
    """IoU of a normalised ``(cx, cy, w, h)`` box and a pixel box, in plain Python."""
    cx, cy, w, h = (float(v) * SIZE for v in centre)
    x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    width = max(0.0, min(x1, box[2]) - max(x0, box[0]))
    height = max(0.0, min(y1, box[3]) - max(y0, box[1]))
    union = (x1 - x0) * (y1 - y0) + (box[2] - box[0]) * (box[3] - box[1]) - width * height
    return width * height / union


def independent_box_score(
    probabilities: Tensor, centres: Tensor, box: tuple[float, ...], label: int
) -> float:
    """``max_q IoU x p_q[label]`` of one image, in plain Python from the raw output."""
    return max(
        pixel_iou(centres[q], box) * float(probabilities[q, label]) for q in range(len(centres))
    )


@pytest.mark.parametrize("name", ["detr", "yolos"])
def test_a_saved_detector_loads_through_hf_and_its_box_is_picked(
    saved: dict[str, Path], name: str
) -> None:
    model = load_model(f"hf:{saved[name]}", batch_size=4)
    assert isinstance(model.module, HuggingFaceDetector)
    x = images()
    with torch.no_grad():
        raw = model.module.model(pixel_values=x)
    picked = pick_boxes(model, x, detection=0)
    for i, choice in enumerate(picked):
        probabilities = raw.logits[i].softmax(-1)[:, :-1]
        best = int(probabilities.max(-1).values.argmax())
        assert choice.target.label == int(probabilities[best].argmax())
        cx, cy, w, h = (float(v) * SIZE for v in raw.pred_boxes[i, best])
        assert choice.target.box == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        expected = independent_box_score(
            raw.logits[i].softmax(-1), raw.pred_boxes[i], choice.target.box, choice.target.label
        )
        assert choice.score == pytest.approx(expected, rel=1e-5)
    box = (8.0, 4.0, 40.0, 30.0)
    given = pick_boxes(model, x, box=box, label=2)
    expected_given = [
        independent_box_score(raw.logits[i].softmax(-1), raw.pred_boxes[i], box, 2)
        for i in range(2)
    ]
    assert [p.score for p in given] == pytest.approx(expected_given, rel=1e-5)
    with pytest.raises(TargetError, match="label 3 is not a class of the detector, which scores 3"):
        pick_boxes(model, x, box=box, label=3)


@pytest.mark.parametrize("name", ["detr", "yolos"])
def test_every_method_explains_a_hugging_face_detection(saved: dict[str, Path], name: str) -> None:
    model = load_model(f"hf:{saved[name]}", batch_size=8)
    x = images()[:1]
    target = pick_boxes(model, x, detection=0)[0].target
    runs: dict[str, dict[str, object]] = {
        "saliency": {},
        "grad_cam": {},
        "occlusion": {"window": 32, "stride": 32},
        "rise": {"activation": "logits", "n_masks": 8, "seed": 0},
    }
    if name == "yolos":
        # A one-block YOLOS has no default CAM layer (the output of its only block does not
        # reach the class and detection tokens' heads through attention): it is refused, so
        # the patch embedding is named.
        with pytest.raises(InvalidParameterError, match="one block"):
            faithmap.explain(model, x, method="grad_cam", target=target)
        module = model.module
        assert isinstance(module, torch.nn.Module)
        (embedding,) = [
            n for n, _ in module.named_modules() if n.endswith("patch_embeddings.projection")
        ]
        runs["grad_cam"] = {"layer": embedding}
    for method, params in runs.items():
        exp = faithmap.explain(model, x, method=method, target=target, **params)
        assert exp.attributions.shape == (1, 1, SIZE, SIZE)
        assert bool(torch.isfinite(exp.attributions).all())
        assert float(exp.attributions.abs().amax()) > 0, method
    with pytest.raises(
        TargetError, match=r"returns a (Detr|Yolos)ObjectDetectionOutput of tensors"
    ):
        faithmap.explain(model, x, method="saliency")


def test_owl_vit_needs_its_text_queries_and_matches_the_patch_box(
    saved: dict[str, Path],
) -> None:
    """With its box head zeroed, OWL-ViT's query ``p`` predicts its prior box: 16 x 16 pixels
    centred on the bottom-right corner of patch ``p`` of the 4 x 4 grid (OWL-ViT's box bias),
    so the box centred at (48, 32) matches query 6 (row 1, column 2) alone."""
    loaded = load_hugging_face(str(saved["owlvit"]))
    assert isinstance(loaded, HuggingFaceDetector)
    x = images()
    with pytest.raises(ModelError, match="text queries: wrap it as HuggingFaceDetector"):
        pick_boxes(loaded, x, detection=0)
    queries = {
        "input_ids": torch.tensor([[1, 5, 2, 0], [1, 7, 9, 2]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
    }
    detector = faithmap.Model(HuggingFaceDetector(loaded.model, text_inputs=queries), batch_size=4)
    with torch.no_grad():
        raw = loaded.model(pixel_values=x, **{k: v.repeat(2, 1) for k, v in queries.items()})
    cell = (40.0, 24.0, 56.0, 40.0)  # row 1, column 2: patch 6
    given = pick_boxes(detector, x, box=cell, label=1)
    for i in range(2):
        probabilities = raw.logits[i].sigmoid()
        products = [
            pixel_iou(raw.pred_boxes[i, q], cell) * float(probabilities[q, 1]) for q in range(16)
        ]
        assert max(range(16), key=products.__getitem__) == 6
        assert pixel_iou(raw.pred_boxes[i, 6], cell) == pytest.approx(1.0, abs=1e-3)
        assert given[i].score == pytest.approx(products[6], rel=1e-5)
    picked = pick_boxes(detector, x, detection=0)
    for i, choice in enumerate(picked):
        scores = raw.logits[i].sigmoid()  # (16 patches, 2 queries)
        patch, label = divmod(int(scores.argmax()), 2)
        row, column = divmod(patch, 4)
        cx, cy, w, h = (float(v) * SIZE for v in raw.pred_boxes[i, patch])
        assert choice.target.label == label
        assert choice.target.box == pytest.approx((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        prior = (16.0 * column + 8, 16.0 * row + 8, 16.0 * column + 24, 16.0 * row + 24)
        assert choice.target.box == pytest.approx(prior, abs=0.01)  # float32 prior boxes
        assert choice.score == pytest.approx(float(scores.max()), rel=1e-5)
    for method, params in {"saliency": {}, "rise": {"activation": "logits", "n_masks": 8}}.items():
        exp = faithmap.explain(detector, x[:1], method=method, target=given[0].target, **params)
        assert float(exp.attributions.abs().amax()) > 0, method
