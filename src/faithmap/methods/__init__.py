"""Attribution methods; importing this package registers every built-in method."""

from faithmap.methods.base import Attribution, Method
from faithmap.methods.extremal import ExtremalPerturbation
from faithmap.methods.feature_ablation import FeatureAblation
from faithmap.methods.hsic import Hsic
from faithmap.methods.integrated_gradients import IntegratedGradients
from faithmap.methods.kernel_shap import KernelShap
from faithmap.methods.lime import Lime
from faithmap.methods.occlusion import Occlusion
from faithmap.methods.rise import Rise
from faithmap.methods.saliency import Saliency
from faithmap.methods.sobol import Sobol
from faithmap.methods.subset import Lima, Smdl

__all__ = [
    "Attribution",
    "ExtremalPerturbation",
    "FeatureAblation",
    "Hsic",
    "IntegratedGradients",
    "KernelShap",
    "Lima",
    "Lime",
    "Method",
    "Occlusion",
    "Rise",
    "Saliency",
    "Smdl",
    "Sobol",
]
