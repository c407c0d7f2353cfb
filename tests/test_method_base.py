"""The Method base: its record, unregistered subclasses, declared constraints, presets."""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import faithmap
import faithmap.methods
from faithmap import Regions
from faithmap.core.constraints import NO_INVALID_VALUE, Constraints, Interval, invalid_value
from faithmap.core.method import Method
from faithmap.core.model import Model
from faithmap.core.registry import register_preset
from faithmap.core.targets import Target
from faithmap.methods import Smdl
from faithmap.metrics import max_sensitivity


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).eval()


def _images(n: int = 2) -> Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _quadrants(n: int) -> Regions:
    rows = torch.arange(8)[:, None] // 4
    cols = torch.arange(8)[None, :] // 4
    return Regions((2 * rows + cols).expand(n, 8, 8).clone(), 4, "quadrants")


# ------------------------------------------------------------------------------ config()
def test_config_holds_the_field_values_themselves() -> None:
    regions = _quadrants(2)
    config = faithmap.get_method("kernel_shap", regions=regions).config()
    assert config["regions"] is regions
    baseline = torch.zeros(1, 3, 8, 8)
    config = faithmap.get_method("integrated_gradients", baseline_tensor=baseline).config()
    assert config["baseline_tensor"] is baseline


def test_kernel_shap_with_regions_can_be_explained_again_by_a_metric() -> None:
    """The explanation's config rebuilds the method (it once held a dict, not the Regions)."""
    net, x = _net(), _images(2)
    regions = _quadrants(2)
    explanation = faithmap.explain(net, x, method="kernel_shap", regions=regions, target=0)
    assert isinstance(explanation.config["regions"], Regions)
    result = max_sensitivity(net, x, explanation, n_samples=1, radius=0.01)
    assert result.values.shape == (2,) and bool(torch.isfinite(result.values).all())
    # Several noisy copies per image: each draw is explained as the batch the regions fit.
    several = max_sensitivity(net, x, explanation, radius=0.01)
    assert several.values.shape == (2,) and bool(torch.isfinite(several.values).all())


def test_a_method_whose_record_describes_a_tensor_is_explained_again_from_its_values() -> None:
    """GradientSHAP records its background by shape and hash; a metric re-explains with the
    background itself (it once rebuilt the method from the record and refused the string)."""
    net, x = _net(), _images(2)
    background = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    explanation = faithmap.explain(net, x, method="gradient_shap", background=background)
    assert isinstance(explanation.config["background"], str)
    assert explanation.params["background"] is background
    result = max_sensitivity(net, x, explanation, n_samples=2)
    assert result.values.shape == (2,) and bool(torch.isfinite(result.values).all())


# ------------------------------------------------------------------ unregistered subclasses
@dataclass(frozen=True, kw_only=True)
class Scaled(Method):
    """The input times ``factor`` (a method nobody registered)."""

    parameter_constraints: ClassVar[Constraints] = {
        "factor": [Interval(float, 0, closed="neither")]
    }

    factor: float = 2.0

    def attribute(self, model: Model, inputs: Tensor, target: Target) -> Tensor:
        return inputs * self.factor


def test_an_unregistered_method_explains_under_its_class_name() -> None:
    x = torch.rand(3, 4)
    explanation = Scaled(factor=3.0).explain(nn.Linear(4, 2), x, target=0)
    assert explanation.method == "Scaled"
    assert explanation.config == {"factor": 3.0}
    torch.testing.assert_close(explanation.attributions, 3.0 * x)
    assert "Scaled" not in faithmap.METHODS


def test_an_unregistered_subclass_of_a_registered_method_has_its_own_name() -> None:
    @dataclass(frozen=True, kw_only=True)
    class MySaliency(faithmap.methods.Saliency):
        pass

    assert MySaliency.name == "MySaliency"
    assert faithmap.methods.Saliency.name == "saliency"
    explanation = MySaliency().explain(nn.Linear(4, 2), torch.rand(2, 4), target=1)
    assert explanation.method == "MySaliency"


# ----------------------------------------------------------------------------- constraints
def test_an_invalid_value_gives_the_one_message_with_the_class_name() -> None:
    with pytest.raises(
        faithmap.InvalidParameterError,
        match=re.escape(
            "The 'steps' parameter of IntegratedGradients must be an int >= 1. Got 0 instead."
        ),
    ):
        faithmap.get_method("integrated_gradients", steps=0)
    with pytest.raises(
        faithmap.InvalidParameterError,
        match=re.escape("The 'factor' parameter of Scaled must be a finite number > 0. Got -1"),
    ):
        Scaled(factor=-1)


def _fields() -> list[Any]:
    return [
        pytest.param(name, field.name, id=f"{name}-{field.name}")
        for name in faithmap.METHODS.names()
        for field in dataclasses.fields(faithmap.METHODS[name])
        if field.init
    ]


@pytest.mark.parametrize(("name", "field"), _fields())
def test_every_field_of_every_method_is_declared_and_checked(name: str, field: str) -> None:
    cls = faithmap.METHODS[name]
    constraints = cls.constraints()
    assert field in constraints, f"{cls.__name__}.{field} declares no constraint"
    bad = invalid_value(constraints[field])
    assert bad is not NO_INVALID_VALUE
    prefix = f"The {field!r} parameter of {cls.__name__} must be "
    with pytest.raises(faithmap.InvalidParameterError, match=f"^{re.escape(prefix)}"):
        cls(**{field: bad})


def test_no_method_class_defines_post_init() -> None:
    classes = {Method}
    for module in list(vars(faithmap.methods).values()):
        if inspect.isclass(module) and issubclass(module, Method):
            classes.update(c for c in module.__mro__ if issubclass(c, Method))
    classes.update(faithmap.METHODS[name] for name in faithmap.METHODS)
    for cls in classes - {Method}:
        assert "__post_init__" not in vars(cls), cls.__qualname__


# ---------------------------------------------------------------------------------- presets
LIMA_VALUES: dict[str, Any] = {
    "search": "bidirectional",
    "consistency": 20.0,
    "collaboration": 5.0,
    "confidence": 0.01,
}


def test_lima_is_a_preset_of_smdl() -> None:
    lima = faithmap.METHODS["lima"]
    assert issubclass(lima, Smdl) and lima is faithmap.methods.Lima
    assert lima.__dataclass_params__.frozen  # type: ignore[attr-defined]
    defaults = {f.name: f.default for f in dataclasses.fields(lima)}
    assert {key: defaults[key] for key in LIMA_VALUES} == LIMA_VALUES
    assert defaults["pending"] == 8 and defaults["effectiveness"] == 0.0
    assert [f.name for f in dataclasses.fields(lima)] == [f.name for f in dataclasses.fields(Smdl)]
    assert all(f.kw_only for f in dataclasses.fields(lima))
    assert faithmap.METHODS.describe("lima") == (
        "LiMA attribution: regions ranked by LiMA's bidirectional greedy search."
    )
    assert "arXiv:2504.00470" in (lima.__doc__ or "")
    assert "consistency=20.0" in (lima.__doc__ or "")
    assert faithmap.get_method("lima").config() == Smdl(**LIMA_VALUES).config()


def test_lima_attributes_exactly_as_smdl_with_the_preset_values() -> None:
    net, x = _net(), _images(2)
    settings: dict[str, Any] = {"regions": "patches:4", "pending": 2, "target": 0}
    lima = faithmap.explain(net, x, method="lima", **settings)
    smdl = faithmap.explain(net, x, method="smdl", **settings, **LIMA_VALUES)
    assert lima.method == "lima" and smdl.method == "smdl"
    assert torch.equal(lima.attributions, smdl.attributions)
    assert lima.ranking is not None and smdl.ranking is not None
    assert torch.equal(lima.ranking, smdl.ranking)
    for name, curve in smdl.curves.items():
        assert torch.equal(lima.curves[name], curve)
    assert lima.cost.forward == smdl.cost.forward


def test_register_preset_refuses_unknown_fields() -> None:
    with pytest.raises(faithmap.InvalidParameterError, match=r"unknown parameters \('nope'\)"):
        register_preset("smdl_nope", Smdl, "Nothing.", "nobody", nope=1)
    assert "smdl_nope" not in faithmap.METHODS
