"""Named benchmark suites: a benchmark design, as data, run on faithmap's own data.

:data:`DEFAULT` is what ``faithmap bench`` runs without ``--suite``: the built-in models, the
methods of :data:`~faithmap.bench.defaults.DEFAULT_METHODS` (every family), insertion and
deletion, and the localisation metrics (pointing game, energy pointing game, relevance mass
accuracy) whenever the data has ground-truth masks, as the built-in shapes do; those cost no
model pass. A new suite is one :class:`Suite` value added to
:data:`SUITES`; one that states conclusions gives a ``conclude`` function.

:data:`ROBUSTNESS` reproduces the design of "How explainable are adversarially-robust CNNs?"
(Nourelahi et al. 2022) on :func:`faithmap.data.make_shapes`: vanilla and PGD-trained versions
of the built-in CNN and ResNet (:mod:`faithmap.zoo.adversarial`), 9 methods from the gradient,
CAM and perturbation families, Insertion/Deletion and three localisation metrics against the
object masks. :func:`run_suite` runs it in this process; besides the metric rows it measures
each model's clean confidence (softmax of the predicted class), accuracy and accuracy on
corrupted images, and states with :func:`~faithmap.bench.findings.findings` which of the
paper's findings hold.

References
----------
Nourelahi, Kotthoff, Chen and Nguyen, "How explainable are adversarially-robust CNNs?",
arXiv:2205.13042, 2022.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from faithmap.api import explain
from faithmap.bench.bam_suite import SUITE_FIELDS as BAM_FIELDS
from faithmap.bench.defaults import DEFAULT_METHOD_PARAMS, DEFAULT_METHODS, LOCALISATION_PARAMS
from faithmap.bench.findings import findings
from faithmap.bench.full_suite import SUITE_FIELDS as FULL_FIELDS
from faithmap.bench.generation_suite import SUITE_FIELDS as GENERATION_FIELDS
from faithmap.bench.grid_suite import SUITE_FIELDS as GRID_FIELDS
from faithmap.bench.model_measures import measure_models
from faithmap.bench.report.palette import METHOD_FAMILIES
from faithmap.bench.roar_suite import SUITE_FIELDS as ROAR_FIELDS
from faithmap.bench.sources import DataSource
from faithmap.core.model import Model
from faithmap.core.registry import METHODS
from faithmap.core.validation import check_int
from faithmap.data import make_shapes
from faithmap.evaluation import evaluate
from faithmap.zoo import BUILTIN_MODELS, load_builtin

__all__ = [
    "DEFAULT",
    "DETECTION",
    "ROBUSTNESS",
    "SUITES",
    "Suite",
    "SuiteResult",
    "bench_findings",
    "data_has_masks",
    "findings",
    "measure_models",
    "run_suite",
]


def _frozen(params: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in params.items()})


@dataclass(frozen=True)
class Suite:
    """A named benchmark design: which models, methods and metrics, with which parameters.

    Attributes
    ----------
    name : str
        The suite's name (``faithmap bench --suite <name>``).
    reference : str
        The study whose design it reproduces.
    models : tuple of str
        Model names; ``<arch>_robust`` is the adversarially trained ``<arch>``.
    families : mapping of str to str
        Each method (in order) → ``"gradient"``, ``"cam"`` or ``"perturbation"``; empty: every
        registered method.
    metrics : tuple of str
        Registered metric names.
    mask_metrics : tuple of str
        Metrics added to ``metrics`` when the data has ground-truth masks.
    method_params, metric_params : mapping
        Parameters per method and per metric; those not named use their defaults.
    n_samples : int
        Images explained per model.
    data_seed : int
        Seed of the explained images.
    n_accuracy : int
        Fresh images on which accuracy and corrupted accuracy are measured.
    accuracy_seed : int
        Seed of those images (odd: never a training set of the zoo's scripts).
    batch_size : int or None
        Rows per model call (:class:`faithmap.Model`); ``None`` measures the fastest.
    image_size : int
        Side of the :func:`~faithmap.data.make_shapes` images.
    data : str
        The built-in data the benchmark runs on: ``"shapes"``, or ``"scenes"`` (detection:
        each image's first object explained with a box target).
    conclude : callable, optional
        ``conclude(suite, rows, n_samples)`` → sentences about a benchmark run's rows (shown
        in the console and at the top of the report); ``None``: the suite states nothing.
    """

    name: str
    reference: str
    models: tuple[str, ...]
    families: Mapping[str, str]
    metrics: tuple[str, ...]
    method_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_samples: int = 16
    data_seed: int = 0
    n_accuracy: int = 500
    accuracy_seed: int = 7919
    batch_size: int | None = 32
    image_size: int = 64
    mask_metrics: tuple[str, ...] = ()
    data: str = "shapes"
    conclude: Callable[[Suite, Sequence[Any], int], list[str]] | None = None

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods, in order (every registered one when :attr:`families` is empty)."""
        return tuple(self.families) or tuple(METHODS.names())

    def bench_options(self, *, masks: bool = True) -> dict[str, Any]:
        """The suite as keyword arguments of :class:`faithmap.bench.BenchConfig`.

        ``masks``: whether the data has ground-truth masks (adds :attr:`mask_metrics`).
        """
        return {
            "data": self.data,
            "models": self.models,
            "methods": self.methods,
            "metrics": self.metrics + (self.mask_metrics if masks else ()),
            "method_params": self.method_params,
            "metric_params": self.metric_params,
            "n_samples": self.n_samples,
            "data_seed": self.data_seed,
            "batch_size": self.batch_size,
        }


ROBUSTNESS = Suite(
    name="robustness",
    reference=(
        'Nourelahi, Kotthoff, Chen and Nguyen, "How explainable are adversarially-robust '
        'CNNs?", arXiv:2205.13042, 2022'
    ),
    models=("cnn", "cnn_robust", "resnet", "resnet_robust"),
    families=MappingProxyType(
        {
            "saliency": "gradient",
            "input_x_gradient": "gradient",
            "integrated_gradients": "gradient",
            "smoothgrad": "gradient",
            "grad_cam": "cam",
            "grad_cam_pp": "cam",
            "rise": "perturbation",
            "occlusion": "perturbation",
            "lime": "perturbation",
        }
    ),
    metrics=(
        "insertion",
        "deletion",
        "pointing_game",
        "energy_pointing_game",
        "relevance_mass_accuracy",
    ),
    method_params=_frozen(
        {
            "smoothgrad": {"n_samples": 25},
            # Both built-in CNNs end in a block named "features" (their last conv block; the
            # ResNet's last nn.Conv2d would be the shortcut projection).
            "grad_cam": {"layer": "features"},
            "grad_cam_pp": {"layer": "features"},
            "rise": {"n_masks": 1000},
            "lime": {"n_samples": 200},
        }
    ),
    metric_params=LOCALISATION_PARAMS,
    conclude=lambda suite, rows, n: _robustness_findings(suite, rows, n),
)
"""The design of Nourelahi et al. (2022) on faithmap's shapes (:func:`run_suite` runs it)."""

DEFAULT = Suite(
    name="default",
    reference="Petsiuk, Das and Saenko, BMVC 2018 (insertion, deletion); Zhang et al. 2016, "
    "Wang et al. 2020, Arras et al. 2022 (pointing game, energy, relevance mass)",
    models=BUILTIN_MODELS,
    families=MappingProxyType({name: METHOD_FAMILIES[name] for name in DEFAULT_METHODS}),
    metrics=("insertion", "deletion"),
    mask_metrics=("pointing_game", "energy_pointing_game", "relevance_mass_accuracy"),
    method_params=DEFAULT_METHOD_PARAMS,
    metric_params=LOCALISATION_PARAMS,
    n_samples=8,
    batch_size=None,
)
"""What ``faithmap bench`` runs: every family's methods on the built-in models, insertion and
deletion, and three localisation metrics when the data has masks (no extra model pass), on 8
images (``--samples 16`` halves the intervals' width by about 1.4)."""

DETECTION = Suite(
    name="detection",
    reference=(
        'Chen et al., "Interpreting Object-level Foundation Models via Visual Precision '
        'Search", CVPR 2025 (VPS, its baselines and metrics); Petsiuk et al., CVPR 2021 (D-RISE)'
    ),
    models=("detector",),
    families=MappingProxyType(
        {
            "vps": "subset",
            "d_rise": "perturbation",
            "grad_cam": "cam",
            "occlusion": "perturbation",
            "rise": "perturbation",
        }
    ),
    metrics=("insertion", "deletion", "box_energy_pointing_game"),
    method_params=_frozen(
        {
            "vps": {"regions": "slic:25"},
            "d_rise": {"n_masks": 1000},
            "rise": {"n_masks": 1000, "activation": "logits"},  # the box target reads raw outputs
        }
    ),
    metric_params=_frozen(
        {"insertion": {"activation": "logits"}, "deletion": {"activation": "logits"}}
    ),
    n_samples=8,
    batch_size=None,
    data="scenes",
)
"""The built-in detector on :func:`~faithmap.data.make_shapes_scenes`, each scene's first
object (its box and class, a :class:`~faithmap.core.detection.BoxTarget`) explained by VPS
(25 superpixels), D-RISE and RISE (1000 masks), Grad-CAM and occlusion; insertion and
deletion of the box score and the energy pointing game in the box."""

SUITES: Mapping[str, Suite] = MappingProxyType(
    {
        suite.name: suite
        for suite in (
            DEFAULT,
            Suite(**FULL_FIELDS),
            ROBUSTNESS,
            DETECTION,
            Suite(**GENERATION_FIELDS),
            Suite(**GRID_FIELDS),
            Suite(**ROAR_FIELDS),
            Suite(**BAM_FIELDS),
        )
    }
)
"""Every named suite by name."""


def data_has_masks(data: DataSource) -> bool:
    """Whether a benchmark's data holds ground-truth masks (the built-in data always does)."""
    return data.is_builtin or data.masks is not None or data.mask_tensors is not None


@dataclass(frozen=True)
class SuiteResult:
    """What :func:`run_suite` measured.

    Attributes
    ----------
    frame : pandas.DataFrame
        The rows of :func:`faithmap.evaluate`, with a ``model`` column first.
    confidences : pandas.DataFrame
        ``model, sample, confidence, predicted``: the softmax probability of the
        predicted class of each explained image.
    accuracies : pandas.DataFrame
        Indexed by model: ``accuracy`` on fresh images, ``ood_accuracy`` on their corrupted
        copies (mean over noise and blur), ``confidence`` (mean clean confidence).
    findings : list of str
        One sentence per finding (i)-(v) of the paper.
    seconds : float
        Wall time of the run.
    """

    frame: Any
    confidences: Any
    accuracies: Any
    findings: list[str]
    seconds: float


def bench_findings(suite: Suite, rows: Sequence[Any], n_samples: int) -> list[str]:
    """The suite's findings from a benchmark run's rows (``faithmap bench --suite``).

    ``rows`` are :class:`faithmap.bench.Row` of a run of ``suite.bench_options()`` on
    ``n_samples`` images. Empty for a suite that states nothing.
    """
    return [] if suite.conclude is None else suite.conclude(suite, rows, n_samples)


def _robustness_findings(suite: Suite, rows: Sequence[Any], n_samples: int) -> list[str]:
    """Findings (i)-(v) of Nourelahi et al.; the models' confidences and accuracies are
    measured here."""
    import pandas

    frame = pandas.DataFrame(
        {
            "model": row.model,
            "method": row.method,
            "metric": row.metric,
            "sample": row.sample,
            "value": row.value,
            "higher_is_better": row.higher_is_better,
        }
        for row in rows
    )
    confidences, accuracies = measure_models(suite, n_samples)
    return findings(frame, confidences, families=suite.families, accuracies=accuracies)


def run_suite(
    suite: Suite = ROBUSTNESS,
    *,
    n_samples: int | None = None,
    load: Callable[[str], nn.Module] = load_builtin,
    log: Callable[[str], None] | None = None,
) -> SuiteResult:
    """Run a suite in this process: explain, evaluate, measure confidence and accuracy.

    Parameters
    ----------
    suite : Suite, default=ROBUSTNESS
        The design to run.
    n_samples : int, optional
        Images explained per model; ``None``: ``suite.n_samples``.
    load : callable, default=faithmap.zoo.load_builtin
        Model name → ``nn.Module`` (classifying ``make_shapes`` images).
    log : callable, optional
        Called with one line per model and method as the run progresses.

    Returns
    -------
    SuiteResult
        The metric rows, confidences, accuracies and the findings.

    References
    ----------
    Nourelahi, Kotthoff, Chen and Nguyen, "How explainable are adversarially-robust CNNs?",
    arXiv:2205.13042, 2022.
    """
    import pandas

    n = check_int(
        suite.n_samples if n_samples is None else n_samples, "n_samples", "run_suite", low=1
    )
    started = time.perf_counter()
    data = make_shapes(n, seed=suite.data_seed, size=suite.image_size)
    confidences, accuracies = measure_models(suite, n, load=load)
    frames = []
    for name in suite.models:
        model = Model(load(name), batch_size=suite.batch_size)
        explanations = {}
        for method in suite.methods:
            explanations[method] = explain(
                model, data.images, method=method, **suite.method_params.get(method, {})
            )
            if log is not None:
                log(f"{name}: {method} explained ({time.perf_counter() - started:.0f} s)")
        frame = evaluate(
            model,
            data.images,
            explanations,
            metrics=list(suite.metrics),
            masks=data.masks,
            params=suite.metric_params,
        )
        frame.insert(0, "model", name)
        frames.append(frame)
        if log is not None:
            log(f"{name}: evaluated ({time.perf_counter() - started:.0f} s)")
    frame = pandas.concat(frames, ignore_index=True)
    stated = findings(frame, confidences, families=suite.families, accuracies=accuracies)
    return SuiteResult(frame, confidences, accuracies, stated, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    """Run :data:`ROBUSTNESS`; print its accuracies, findings and time, optionally save rows.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments; ``sys.argv[1:]`` when None.
    """
    parser = argparse.ArgumentParser(prog="python -m faithmap.bench.suites")
    parser.add_argument("--n-samples", type=int, dest="n_samples", default=None)
    parser.add_argument("--csv", type=Path, default=None, help="write the metric rows here")
    options = parser.parse_args(argv)
    result = run_suite(n_samples=options.n_samples, log=lambda line: print(line, flush=True))
    if options.csv is not None:
        result.frame.to_csv(options.csv, index=False)
    print(result.accuracies.round(3).to_string())
    print("\n".join(result.findings))
    n = ROBUSTNESS.n_samples if options.n_samples is None else options.n_samples
    print(f"{n} samples per model, {len(ROBUSTNESS.models)} models, in {result.seconds:.0f} s")


if __name__ == "__main__":
    main()
