"""A Hugging Face ViT image classifier at 224 x 224, loaded as a user loads one (``hf:DIR``),
explained by every registered method (issue 17, item 6).

The model is built from a ``ViTConfig`` with random weights (no download): the real
``ViTForImageClassification`` class at the size users run, 224 x 224 in 16-pixel patches (a
14 x 14 grid and a class token), made narrow and shallow (width 48, three blocks) so that every
method runs in CI. Each method either returns a finite, non-constant map of the input's shape,
leaving the model exactly as it was, or is one of the methods listed in :data:`NOT_APPLICABLE`
and refuses with a :class:`~faithmap.errors.ModelError` that names what to use instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

import faithmap
from faithmap.core.model import Model
from faithmap.errors import ModelError
from faithmap.testing import assert_same_state, module_state
from faithmap.zoo.libraries import HuggingFaceLogits
from faithmap.zoo.loaders import load_model

NOT_APPLICABLE = {
    # method: a phrase of its refusal naming the alternative or the reason
    "lrp": "attn_lrp",
    "deep_lift": "LayerNorm",
    "deep_shap": "LayerNorm",
    "full_grad": "holds parameters",
}
"""Methods that cannot explain a ViT, each refusing with a message."""

LIGHT: dict[str, dict[str, Any]] = {
    # Only the cost of each method is lowered (CI runs every method at 224 x 224 on 2 CPU
    # cores); the defaults themselves are tested at 224 x 224 in test_input_sizes.py.
    "extremal": {"iterations": 5},
    "rise": {"n_masks": 48},
    "d_rise": {"n_masks": 48},
    "lime": {"n_samples": 48},
    "kernel_shap": {"n_samples": 48},
    "sobol": {"n_design": 2, "regions": "patches:56"},
    "hsic": {"n_design": 48},
    "smoothgrad": {"n_samples": 4},
    "gradient_shap": {"n_samples": 4},
    "integrated_gradients": {"steps": 8},
    "occlusion": {"window": 56, "stride": 56},
    "feature_ablation": {"regions": "patches:56"},
    "shapley_sampling": {"regions": "patches:56", "n_permutations": 2},
    "owen": {"regions": "patches:56", "max_passes": 40},
    "smdl": {"regions": "patches:56", "search": "stochastic"},
    "lima": {"regions": "patches:56", "search": "stochastic"},
    "vps": {"regions": "patches:56", "search": "stochastic"},
    # A random-weight ViT can give every token channel a negative Score-CAM weight, which the
    # ReLU turns into an all-zero map (a warning says so); without it the map is checked.
    "score_cam": {"relu": False},
}


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> Model:
    config = transformers.ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=96,
        num_labels=6,  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in ViTConfig's
    )
    torch.manual_seed(0)
    net: Any = transformers.ViTForImageClassification(config)
    folder = Path(tmp_path_factory.mktemp("hf")) / "vit"
    net.save_pretrained(folder)
    model = load_model(f"hf:{folder}")
    assert isinstance(model.module, HuggingFaceLogits)
    return model


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", faithmap.METHODS.names())
def test_every_method_explains_a_hugging_face_vit_at_224(
    name: str, vit: Model, image: torch.Tensor
) -> None:
    assert isinstance(vit.module, torch.nn.Module)
    before = module_state(vit.module)
    if name in NOT_APPLICABLE:
        with pytest.raises(ModelError, match=NOT_APPLICABLE[name]):
            faithmap.explain(vit, image, method=name, **LIGHT.get(name, {}))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a constant-map warning fails the test
            explanation = faithmap.explain(vit, image, method=name, **LIGHT.get(name, {}))
        maps = explanation.attributions
        assert maps.shape[0] == 1 and maps.shape[-2:] == (224, 224)
        assert maps.shape[1] in (1, 3)
        assert bool(maps.isfinite().all())
        assert float(maps.amax() - maps.amin()) > 0
        assert explanation.cost.forward > 0
    assert_same_state(vit.module, before)
