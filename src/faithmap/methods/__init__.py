"""Attribution methods; importing this package registers every built-in method."""

from faithmap.core.method import Attribution, Method
from faithmap.methods.ablation_cam import AblationCam
from faithmap.methods.attention_gradient import AttentionGradient
from faithmap.methods.attention_rollout import AttentionRollout
from faithmap.methods.d_rise import DRise
from faithmap.methods.deep_lift import DeepLift
from faithmap.methods.deep_shap import DeepShap
from faithmap.methods.eigen_cam import EigenCam
from faithmap.methods.extremal import ExtremalPerturbation
from faithmap.methods.feature_ablation import FeatureAblation
from faithmap.methods.full_grad import FullGrad
from faithmap.methods.grad_cam import GradCam
from faithmap.methods.grad_cam_pp import GradCamPlusPlus
from faithmap.methods.gradient_shap import GradientShap
from faithmap.methods.guided_backprop import GuidedBackprop
from faithmap.methods.hires_cam import HiResCam
from faithmap.methods.hsic import Hsic
from faithmap.methods.input_x_gradient import InputXGradient
from faithmap.methods.integrated_gradients import IntegratedGradients
from faithmap.methods.kernel_shap import KernelShap
from faithmap.methods.layer_cam import LayerCam
from faithmap.methods.layers import LayerMethod
from faithmap.methods.lime import Lime
from faithmap.methods.lrp import Lrp
from faithmap.methods.lrp_transformer import AttnLrp
from faithmap.methods.noise_tunnel import NoiseTunnel
from faithmap.methods.occlusion import Occlusion
from faithmap.methods.owen import OwenValues
from faithmap.methods.rise import Rise
from faithmap.methods.saliency import Saliency
from faithmap.methods.score_cam import ScoreCam
from faithmap.methods.shapley_sampling import ShapleySampling
from faithmap.methods.sobol import Sobol
from faithmap.methods.subset import Lima, Smdl
from faithmap.methods.vps import Vps
from faithmap.methods.xgrad_cam import XGradCam

__all__ = [
    "AblationCam",
    "AttentionGradient",
    "AttentionRollout",
    "AttnLrp",
    "Attribution",
    "DRise",
    "DeepLift",
    "DeepShap",
    "EigenCam",
    "ExtremalPerturbation",
    "FeatureAblation",
    "FullGrad",
    "GradCam",
    "GradCamPlusPlus",
    "GradientShap",
    "GuidedBackprop",
    "HiResCam",
    "Hsic",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "LayerCam",
    "LayerMethod",
    "Lima",
    "Lime",
    "Lrp",
    "Method",
    "NoiseTunnel",
    "Occlusion",
    "OwenValues",
    "Rise",
    "Saliency",
    "ScoreCam",
    "ShapleySampling",
    "Smdl",
    "Sobol",
    "Vps",
    "XGradCam",
]
