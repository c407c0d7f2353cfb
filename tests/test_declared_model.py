"""The user's model declared once and honoured everywhere: outputs, preprocessing, targets.

Each number is compared with a reference computed by hand: the same network with the
preprocessing written out in torch, or the logits model the probabilities came from.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import faithmap
from faithmap.core.preprocessing import Preprocessing
from faithmap.data import make_shapes
from faithmap.errors import ConstantMapWarning, InvalidParameterError, ModelError, TargetError
from faithmap.metrics import deletion, insertion
from faithmap.testing.standins import (
    PROBABILITY_CLASSIFIER_PREPROCESSING,
    GridDetector,
    ProbabilityClassifier,
    export_onnx,
    strip_images,
)


@pytest.fixture(scope="module")
def shapes() -> faithmap.data.Shapes:  # type: ignore[name-defined]
    return make_shapes(4, seed=0)


@pytest.fixture(scope="module")
def strips(shapes: object) -> Tensor:
    return strip_images(shapes.images)  # type: ignore[attr-defined]


class HandPreprocessed(nn.Module):
    """The stand-in classifier with its preprocessing written out by hand."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net((x.flip(1) - 0.5) / 0.5)
        return out


class Logits(nn.Module):
    """The stand-in classifier without its final softmax."""

    def __init__(self, net: ProbabilityClassifier) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        rgb = ((x.flip(1) - 0.5) / 0.5 * 0.5 + 0.5).flip(1)
        middle = rgb[..., 72:120]
        square = nn.functional.interpolate(middle, size=(64, 64), mode="bilinear")
        out: Tensor = self.net.cnn(square)
        return out


def test_probability_outputs_get_no_second_softmax(strips: Tensor) -> None:
    net = ProbabilityClassifier()
    declared = faithmap.Model(
        net,
        outputs="probabilities",
        preprocessing=PROBABILITY_CLASSIFIER_PREPROCESSING,
        batch_size=16,
    )
    logits = faithmap.Model(Logits(net), batch_size=16)
    explanation = faithmap.explain(logits, strips, method="rise", seed=0, n_masks=200)
    expected = insertion(logits, strips, explanation, steps=8).values
    got = insertion(declared, strips, explanation, steps=8).values
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    undeclared = faithmap.Model(
        net, preprocessing=PROBABILITY_CLASSIFIER_PREPROCESSING, batch_size=16
    )
    twice = insertion(undeclared, strips, explanation, steps=8).values
    assert float((twice - expected).abs().max()) > 0.05  # the silent bug this guards against


def test_log_probabilities_read_as_probabilities(strips: Tensor) -> None:
    net = ProbabilityClassifier()

    def log_probs(x: Tensor) -> Tensor:
        out: Tensor = net(x).log()
        return out

    prep = PROBABILITY_CLASSIFIER_PREPROCESSING
    as_probs = faithmap.Model(net, outputs="probabilities", preprocessing=prep, batch_size=8)
    as_logs = faithmap.Model(
        log_probs, outputs="log_probabilities", preprocessing=prep, batch_size=8
    )
    torch.testing.assert_close(
        as_logs.outputs(strips, activation="softmax"),
        as_probs.outputs(strips, activation="softmax"),
        rtol=1e-5,
        atol=1e-6,
    )


def test_preprocessing_inside_the_call_equals_preprocessing_by_hand(strips: Tensor) -> None:
    net = ProbabilityClassifier()
    declared = faithmap.Model(
        net,
        outputs="probabilities",
        preprocessing=PROBABILITY_CLASSIFIER_PREPROCESSING,
        batch_size=32,
    )
    by_hand = faithmap.Model(HandPreprocessed(net), outputs="probabilities", batch_size=32)
    for method, params in (("saliency", {}), ("occlusion", {"window": 16, "stride": 16})):
        got = faithmap.explain(declared, strips, method=method, **params)
        expected = faithmap.explain(by_hand, strips, method=method, **params)
        torch.testing.assert_close(got.attributions, expected.attributions)
        assert got.model["preprocessing"]["channels"] == "bgr"
        assert got.model["outputs"] == "probabilities"


def test_log_odds_readout_matches_a_float64_hand_computation() -> None:
    logits = torch.tensor([[30.0, 0.0, -1.0], [1.0, 2.0, 3.0]])
    model = faithmap.Model(nn.Identity(), batch_size=4)
    got = model.activate(logits, "log_odds")
    z = logits.double()
    # log p_c - log(1 - p_c) = z_c - logsumexp over the other classes
    expected = torch.stack(
        [
            torch.stack(
                [z[i, c] - torch.cat([z[i, :c], z[i, c + 1 :]]).logsumexp(0) for c in range(3)]
            )
            for i in range(2)
        ]
    )
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
    probabilities = torch.tensor([[0.99999, 0.00001], [0.25, 0.75]])
    as_probs = faithmap.Model(nn.Identity(), batch_size=4, outputs="probabilities")
    p = probabilities.double()
    torch.testing.assert_close(
        as_probs.activate(probabilities, "log_odds").double(),
        (p / (1 - p)).log(),
        rtol=1e-3,
        atol=1e-3,
    )


def test_saturated_probabilities_keep_a_signal_through_log_odds() -> None:
    weights = torch.linspace(-1.0, 1.0, 64).view(1, 1, 8, 8) * 0.05

    def margin(x: Tensor) -> Tensor:
        return 12.0 + (x * weights).sum(dim=(1, 2, 3))

    def saturated(x: Tensor) -> Tensor:  # p(class 0) = sigmoid(margin) > 0.99999
        z = margin(x)
        return torch.stack([z, torch.zeros_like(z)], 1).softmax(1)

    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = faithmap.Model(saturated, outputs="probabilities", batch_size=16)
    with pytest.warns(ConstantMapWarning, match="saturated.*activation='log_odds'"):
        flat = faithmap.explain(model, x, method="occlusion", target=0, window=2, stride=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odds = faithmap.explain(
            model, x, method="occlusion", target=0, window=2, stride=2, activation="log_odds"
        )
        reference = faithmap.explain(
            margin, x, method="occlusion", target=0, window=2, stride=2, activation="logits"
        )
    assert float(flat.attributions.abs().max()) < 1e-4
    # the log-odds of two classes is the margin itself; float32 probabilities 6e-6 from 1
    # resolve 1 - p to about 1 %, so the log-odds carry an error of about 0.01
    torch.testing.assert_close(odds.attributions, reference.attributions, atol=0.03, rtol=0.0)
    assert float(reference.attributions.abs().max()) > 0.1


def test_a_detector_is_explained_and_evaluated_through_its_callable_target(
    shapes: object,
) -> None:
    x = shapes.images[:2]  # type: ignore[attr-defined]
    model = faithmap.Model(GridDetector(), batch_size=8)

    def best_box(output: Tensor) -> Tensor:
        return output[:, 4, :].max(dim=1).values

    with pytest.raises(TargetError, match=r"not \(B, C\) class scores, so the predicted class"):
        faithmap.explain(model, x, method="saliency")
    explanation = faithmap.explain(model, x, method="saliency", target=best_box)
    assert explanation.target is None and explanation.score is best_box
    result = deletion(model, x, explanation, activation="logits", steps=8)
    assert result.choices["target"] == "explained"
    given = deletion(
        model, x, explanation.attributions, target=best_box, activation="logits", steps=8
    )
    torch.testing.assert_close(result.values, given.values)
    with pytest.raises(TargetError, match="activation='logits'"):
        deletion(model, x, explanation, steps=8)
    with pytest.raises(TargetError, match="class scores"):
        deletion(model, x, explanation.attributions, steps=8, activation="logits")


def test_one_callable_per_sample_equals_each_sample_alone(shapes: object) -> None:
    x = shapes.images[:3]  # type: ignore[attr-defined]
    model = faithmap.Model(GridDetector(), batch_size=8)
    anchors = (0, 5, 15)
    functions = [lambda out, a=a: out[:, 4, a] for a in anchors]
    window = {"window": 16, "stride": 16, "activation": "logits"}
    together = faithmap.explain(model, x, method="occlusion", target=functions, **window)
    for i, function in enumerate(functions):
        alone = faithmap.explain(model, x[i : i + 1], method="occlusion", target=function, **window)
        torch.testing.assert_close(together.attributions[i : i + 1], alone.attributions)
    with pytest.raises(TargetError, match="one callable per sample"):
        faithmap.explain(model, x, method="occlusion", target=functions[:2], **window)


def test_subset_selection_confidence_reads_a_callable_target(shapes: object) -> None:
    x = shapes.images[:1]  # type: ignore[attr-defined]
    mask = shapes.masks[0, 0]  # type: ignore[attr-defined]
    model = faithmap.Model(GridDetector(cells=4), batch_size=32)
    rows, cols = mask.nonzero(as_tuple=True)
    cell = int(rows.float().mean() // 16) * 4 + int(cols.float().mean() // 16)

    def object_score(output: Tensor) -> Tensor:
        return output[:, 4, cell]

    explanation = faithmap.explain(
        model, x, method="lima", target=object_score, regions="patches:16", seed=0
    )
    assert explanation.ranking is not None
    first = int(explanation.ranking[0, 0])  # patches:16 are the detector's 16 x 16 cells
    assert first == cell


def test_keep_aspect_letterboxes_by_hand() -> None:
    prep = Preprocessing(size=(20, 20), keep_aspect=True, pad_value=0.25)
    image = torch.ones(1, 3, 10, 40)
    fitted = prep.fit(image)
    assert fitted.shape == (1, 3, 20, 20)
    # 10x40 scaled by 0.5 is 5x20, centred: rows 7..11 hold the image, the rest is padding
    assert bool((fitted[..., 7:12, :] == 1).all())
    assert bool((fitted[..., :7, :] == 0.25).all()) and bool((fitted[..., 12:, :] == 0.25).all())


def test_preprocessing_checks_its_fields() -> None:
    with pytest.raises(InvalidParameterError, match="Valid names are: imagenet"):
        Preprocessing(mean="imagenette")
    with pytest.raises(InvalidParameterError, match=r"std.*> 0"):
        Preprocessing(mean=0.5, std=0.0)
    with pytest.raises(InvalidParameterError, match="HxW"):
        Preprocessing(size="48by192")  # type: ignore[arg-type]
    assert Preprocessing(mean="imagenet").std == (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def onnx_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("onnx")
    return export_onnx(ProbabilityClassifier(), folder / "direction.onnx", (3, 48, 192))


def test_onnx_classifier_with_declared_preprocessing_matches_the_torch_reference(
    onnx_classifier: Path, strips: Tensor
) -> None:
    onnx_model = faithmap.Model.from_onnx(
        onnx_classifier,
        outputs="probabilities",
        preprocessing=PROBABILITY_CLASSIFIER_PREPROCESSING,
        batch_size=16,
    )
    by_hand = faithmap.Model(
        HandPreprocessed(ProbabilityClassifier()), outputs="probabilities", batch_size=16
    )
    explanation = faithmap.explain(onnx_model, strips, method="rise", seed=0, n_masks=100)
    reference = faithmap.explain(by_hand, strips, method="rise", seed=0, n_masks=100)
    torch.testing.assert_close(
        explanation.attributions, reference.attributions, atol=1e-4, rtol=1e-3
    )
    torch.testing.assert_close(
        insertion(onnx_model, strips, explanation, steps=8).values,
        insertion(by_hand, strips, explanation, steps=8).values,
        atol=1e-4,
        rtol=1e-4,
    )


class TwoInputs(nn.Module):
    def forward(self, image: Tensor, gain: Tensor) -> Tensor:
        return image.flatten(1)[:, :3] * gain


def test_onnx_extra_inputs_are_constants(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript; deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            TwoInputs(),
            (torch.rand(2, 1, 2, 2), torch.ones(1, 3)),
            str(path),
            input_names=["image", "gain"],
            output_names=["out"],
            dynamic_axes={"image": {0: "batch"}, "out": {0: "batch"}},
            dynamo=False,
        )
    with pytest.raises(ModelError, match="extra_inputs"):
        faithmap.Model.from_onnx(path)
    gain = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    model = faithmap.Model.from_onnx(path, extra_inputs={"gain": gain}, batch_size=4)
    x = torch.rand(3, 1, 2, 2)
    torch.testing.assert_close(model.outputs(x), x.flatten(1)[:, :3] * torch.from_numpy(gain))
    assert math.isclose(float(model.outputs(x)[0, 2]), 3 * float(x.flatten(1)[0, 2]), rel_tol=1e-6)
