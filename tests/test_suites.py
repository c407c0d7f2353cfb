"""The robustness suite: its definition, its run, and the findings stated from its numbers."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import faithmap
from conftest import TinyNet
from faithmap.bench.suites import ROBUSTNESS, SUITES, Suite, findings, run_suite
from faithmap.data import make_shapes
from faithmap.metrics import METRICS

FAMILIES = dict(ROBUSTNESS.families)
HIGHER = {"insertion": True, "deletion": False, "pointing_game": True}
PAIRED = ("a", "a_robust", "b", "b_robust")


def _frame(values: dict[tuple[str, str, str], list[float]]) -> pd.DataFrame:
    """Rows of faithmap.evaluate (with a model column) from (model, method, metric) → values."""
    rows = [
        {
            "model": model,
            "method": method,
            "metric": metric,
            "sample": i,
            "value": value,
            "higher_is_better": HIGHER[metric],
        }
        for (model, method, metric), sample_values in values.items()
        for i, value in enumerate(sample_values)
    ]
    return pd.DataFrame(rows)


def _confidences(per_model: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(m, i, c) for m, cs in per_model.items() for i, c in enumerate(cs)]
    return pd.DataFrame(rows, columns=["model", "sample", "confidence"])


CONFIDENCE = {
    "a": [0.9, 0.95, 0.99],
    "a_robust": [0.5, 0.6, 0.7],
    "b": [0.8, 0.85, 0.9],
    "b_robust": [0.4, 0.45, 0.55],
}


def _sentence(stated: list[str], number: str) -> str:
    (sentence,) = [s for s in stated if s.startswith(f"({number})")]
    return sentence


def test_suite_names_only_registered_methods_and_metrics() -> None:
    assert SUITES["robustness"] is ROBUSTNESS
    assert len(ROBUSTNESS.methods) == 9
    assert set(ROBUSTNESS.methods) <= set(faithmap.METHODS.names())
    assert set(ROBUSTNESS.metrics) <= set(METRICS)
    assert sorted(set(ROBUSTNESS.families.values())) == ["cam", "gradient", "perturbation"]
    assert {"grad_cam", "rise"} <= set(ROBUSTNESS.methods)
    assert ROBUSTNESS.models == ("cnn", "cnn_robust", "resnet", "resnet_robust")
    for method, params in ROBUSTNESS.method_params.items():
        assert faithmap.get_method(method, **params)  # every parameter is the method's
    for metric, params in ROBUSTNESS.metric_params.items():
        assert metric in ROBUSTNESS.metrics
        assert set(params) <= set(inspect.signature(METRICS[metric].function).parameters)
    assert ROBUSTNESS.bench_options()["methods"] == ROBUSTNESS.methods


def test_finding_iv_holds_when_insertion_follows_confidence() -> None:
    # Insertion AUC equal to the confidence and deletion AUC half of it: both correlate
    # perfectly with confidence (r = rho = 1), and vanilla models (more confident) have the
    # higher AUCs in both pairs.
    values = {}
    for model, conf in CONFIDENCE.items():
        for method in ("saliency", "grad_cam"):
            values[(model, method, "insertion")] = conf
            values[(model, method, "deletion")] = [c / 2 for c in conf]
    sentence = _sentence(
        findings(_frame(values), _confidences(CONFIDENCE), families=FAMILIES), "iv"
    )
    assert "because they follow the model's confidence: holds." in sentence
    assert "Mean clean confidence: a 0.947, a_robust 0.600, b 0.850, b_robust 0.467." in sentence
    for metric in ("insertion", "deletion"):
        assert (
            f"{metric.capitalize()} AUC vs confidence: per sample Pearson r = 1.00, Spearman "
            f"rho = 1.00 (n = 24); across models r = 1.00, rho = 1.00 (n = 4)"
        ) in sentence
        assert f"{metric} AUC is higher for the vanilla model" in sentence
    assert sentence.count("in 2 of 2 pairs") == 2


def test_finding_iv_does_not_hold_when_insertion_opposes_confidence() -> None:
    values = {
        (model, "saliency", metric): [1 - c for c in conf]
        for model, conf in CONFIDENCE.items()
        for metric in ("insertion", "deletion")
    }
    sentence = _sentence(
        findings(_frame(values), _confidences(CONFIDENCE), families=FAMILIES), "iv"
    )
    assert "confidence: does not hold." in sentence
    assert "per sample Pearson r = -1.00, Spearman rho = -1.00 (n = 12)" in sentence
    assert sentence.count("in 0 of 2 pairs") == 2


def _ranked_frame(best_first: list[str]) -> pd.DataFrame:
    """Two models, insertion and deletion; methods ranked in the order of ``best_first``."""
    values = {}
    for model in ("a", "b"):
        for rank, method in enumerate(best_first):
            values[(model, method, "insertion")] = [1.0 - rank / 10, 0.9 - rank / 10]
            values[(model, method, "deletion")] = [rank / 10, 0.1 + rank / 10]
    return _frame(values)


def test_finding_iii_holds_when_grad_cam_and_rise_lead() -> None:
    others = [m for m in FAMILIES if m not in ("grad_cam", "rise")]
    frame = _ranked_frame(["grad_cam", "saliency", "rise", *others[1:]])
    sentence = _sentence(findings(frame, _confidences({}), families=FAMILIES), "iii")
    assert sentence.startswith("(iii) Grad-CAM and RISE are the best of the 9 methods: holds.")
    assert "Both rank in the top 3 in 4 of 4 model x metric cases" in sentence
    assert "mean ranks grad_cam 1.0 and rise 3.0, best overall grad_cam (1.0)" in sentence
    assert "insertion on a: 1 and 3; deletion on a: 1 and 3" in sentence


def test_finding_iii_does_not_hold_when_they_trail() -> None:
    others = [m for m in FAMILIES if m not in ("grad_cam", "rise")]
    frame = _ranked_frame([*others, "rise", "grad_cam"])
    sentence = _sentence(findings(frame, _confidences({}), families=FAMILIES), "iii")
    assert ": does not hold." in sentence
    assert "insertion on b: 9 and 8" in sentence


def test_finding_i_compares_families_within_each_pair() -> None:
    # Robust better with gradient methods (higher pointing game, lower deletion), worse with
    # CAM and perturbation methods: the paper's pattern, in both metrics of the one pair.
    values = {}
    for method, family in FAMILIES.items():
        shift = 0.1 if family == "gradient" else -0.1
        values[("a", method, "pointing_game")] = [0.5, 0.5]
        values[("a_robust", method, "pointing_game")] = [0.5 + shift, 0.5 + shift]
        values[("a", method, "deletion")] = [0.3, 0.3]
        values[("a_robust", method, "deletion")] = [0.3 - shift, 0.3 - shift]
    sentence = _sentence(findings(_frame(values), _confidences({}), families=FAMILIES), "i")
    assert "perturbation methods: holds." in sentence
    assert "gradient methods in 2 of 2 model x metric cases, with CAM methods in 0" in sentence
    values[("a_robust", "grad_cam", "deletion")] = [0.0, 0.0]  # now CAM gains on deletion
    sentence = _sentence(findings(_frame(values), _confidences({}), families=FAMILIES), "i")
    assert "perturbation methods: partly holds (1 of 2)." in sentence
    assert "the pattern holds for pointing_game on a" in sentence


@pytest.mark.parametrize(
    ("accuracy", "ood", "verdict"),
    [([0.99, 0.90], [0.6, 0.8], "holds"), ([0.99, 0.90], [0.8, 0.6], "does not hold")],
)
def test_finding_v(accuracy: list[float], ood: list[float], verdict: str) -> None:
    # "a" is the more explainable model (pointing game 0.9 vs 0.5).
    frame = _frame(
        {("a", "saliency", "pointing_game"): [0.9], ("b", "saliency", "pointing_game"): [0.5]}
    )
    accuracies = pd.DataFrame({"accuracy": accuracy, "ood_accuracy": ood}, index=["a", "b"])
    stated = findings(frame, _confidences({}), families=FAMILIES, accuracies=accuracies)
    assert f"explainability: {verdict}. Most accurate a (0.990)" in _sentence(stated, "v")
    assert "most explainable a (mean rank 1.00 of 2" in _sentence(stated, "v")
    assert "not tested" in _sentence(stated, "ii")
    assert "not tested" in _sentence(findings(frame, _confidences({}), families=FAMILIES), "v")


# Untrained tiny nets: Grad-CAM's ReLU zeroes the map of samples whose class evidence is nowhere
# positive, and faithmap warns (ConstantMapWarning); a suite scores such maps like any other.
FLAT_MAPS_OF_UNTRAINED_NETS = pytest.mark.filterwarnings(
    "ignore::faithmap.errors.ConstantMapWarning"
)


@FLAT_MAPS_OF_UNTRAINED_NETS
def test_run_suite_on_tiny_models() -> None:
    nets: dict[str, Any] = {}
    for seed, name in enumerate(("tiny", "tiny_robust")):
        torch.manual_seed(seed)
        nets[name] = TinyNet(classes=6).eval()
    suite = Suite(
        name="tiny",
        reference="test",
        models=("tiny", "tiny_robust"),
        families={"saliency": "gradient", "grad_cam": "cam", "occlusion": "perturbation"},
        metrics=("insertion", "pointing_game"),
        method_params={"grad_cam": {"layer": "features"}, "occlusion": {"window": 8, "stride": 8}},
        metric_params={"insertion": {"steps": 4}},
        n_samples=3,
        n_accuracy=10,
        image_size=32,
    )
    result = run_suite(suite, load=nets.__getitem__)
    assert len(result.frame) == 2 * 3 * 2 * 3
    assert list(result.frame.columns[:3]) == ["model", "sample", "method"]
    images = make_shapes(3, seed=0, size=32).images
    for name, net in nets.items():
        with torch.no_grad():
            expected = net(images).softmax(dim=1).amax(dim=1)
        got = result.confidences.loc[result.confidences["model"] == name, "confidence"]
        torch.testing.assert_close(torch.tensor(got.to_numpy()).float(), expected)
        assert result.accuracies.loc[name, "confidence"] == pytest.approx(float(expected.mean()))
    assert set(result.accuracies.columns) == {"accuracy", "ood_accuracy", "confidence"}
    assert [s[: s.index(")") + 1] for s in result.findings] == [
        "(i)",
        "(ii)",
        "(iii)",
        "(iv)",
        "(v)",
    ]
    assert result.seconds > 0


def test_bench_suite_runs_through_the_store_and_states_findings_in_the_report(
    tmp_path: Path,
) -> None:
    """`faithmap bench --suite robustness` on 2 images and 3 of its methods."""
    from typer.testing import CliRunner

    from faithmap.cli import app

    out = tmp_path / "suite"
    args = ["bench", "--suite", "robustness", "--samples", "2", "--no-progress"]
    args += ["--methods", "saliency,grad_cam,rise", "-p", "rise.n_masks=64", "--out", str(out)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "robustness suite findings:" in result.output
    stated = [line for line in result.output.splitlines() if line.startswith("- (")]
    assert [line[:6] for line in stated] == ["- (i) ", "- (ii)", "- (iii", "- (iv)", "- (v) "]
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.model) == set(ROBUSTNESS.models)
    assert set(rows.metric) == set(ROBUSTNESS.metrics)
    page = (out / "report.html").read_text()
    assert 'id="findings"' in page
    assert "(iv) Insertion and Deletion" in page
    # The findings are stored with the run: `faithmap report` writes them again.
    (out / "report.html").unlink()
    again = CliRunner().invoke(app, ["report", str(out)])
    assert again.exit_code == 0, again.output
    assert "(iv) Insertion and Deletion" in (out / "report.html").read_text()


def test_unknown_suite_lists_the_valid_ones() -> None:
    from typer.testing import CliRunner

    from faithmap.cli import app

    result = CliRunner().invoke(app, ["bench", "--suite", "nope"])
    assert result.exit_code == 2
    listed = ", ".join(sorted(SUITES))  # every registered suite, in order
    assert {"default", "detection", "robustness"} <= set(SUITES)
    assert f"Unknown suite 'nope'. Valid names are: {listed}." in result.output


def test_the_default_suite_adds_localisation_when_the_data_has_masks() -> None:
    from faithmap.bench import BenchConfig
    from faithmap.bench.sources import data_source
    from faithmap.bench.suites import DEFAULT, data_has_masks

    assert SUITES["default"] is DEFAULT and DEFAULT.conclude is None
    localisation = ("pointing_game", "energy_pointing_game", "relevance_mass_accuracy")
    assert all(METRICS[m].needs_masks for m in localisation)
    assert DEFAULT.bench_options(masks=False)["metrics"] == ("insertion", "deletion")
    config = BenchConfig(**DEFAULT.bench_options())
    assert config.metrics == ("insertion", "deletion", *localisation)
    plain = BenchConfig()  # the Python default: the same models, methods and parameters
    assert (config.models, config.methods) == (plain.models, plain.methods)
    assert config.method_params == plain.method_params
    assert config.metric_kwargs("pointing_game") == {"tolerance": 4}  # 15 px at 224 ~ 4 at 64
    # Score-CAM's min-max energy, so that its column is not relevance mass accuracy's again
    assert config.metric_kwargs("energy_pointing_game") == {"part": "minmax"}
    assert SUITES["full"].metric_params == DEFAULT.metric_params
    assert data_has_masks(data_source("shapes"))
    assert not data_has_masks(data_source(torch.zeros(2, 3, 8, 8)))
    assert data_has_masks(data_source((torch.zeros(2, 3, 8, 8), torch.ones(2, 1, 8, 8) > 0)))


def test_the_suites_localisation_columns_measure_different_things() -> None:
    """A signed 2 x 2 map with the object on its top row: the positive energy is
    (3 + 1) / (3 + 1 + 4) = 0.5, as relevance mass accuracy; the min-max energy of the suites
    is (8 + 6) / (8 + 6 + 0 + 9) = 14 / 23."""
    from faithmap.bench.suites import DEFAULT
    from faithmap.metrics import energy_pointing_game, relevance_mass_accuracy

    maps = torch.tensor([[[[3.0, 1.0], [-5.0, 4.0]]]])
    masks = torch.tensor([[[[True, True], [False, False]]]])
    energy = energy_pointing_game(maps, masks, **DEFAULT.metric_params["energy_pointing_game"])
    mass = relevance_mass_accuracy(maps, masks)
    assert energy.values.item() == pytest.approx(14 / 23)
    assert mass.values.item() == pytest.approx(0.5)
    assert energy_pointing_game(maps, masks).values.item() == pytest.approx(0.5)
